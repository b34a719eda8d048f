"""A LoRA student as a full-weight student: its adapter merged into the pruned weights (models/lora.py).

`vip_loop.py --lora` trains one adapter over M0's frozen weights and saves each stage's student as the
adapter and the removed blocks. This writes the folder a full-weight run writes (the source, the removed
blocks, the trained weights), which `models.load`, evaluate.py and the other scripts read as any student:

    python -m models.export --model tiny --student runs/x/stage_2/student --out runs/x/stage_2/student_merged
"""
import argparse

from infra.cli import UserError, run_cli

import torch

import defaults
import models


def export(model_name, student_dir, out_dir):
    """A LoRA student folder -> the full-weight student folder: the base loaded in float32 on the CPU, the
    adapter merged into it (W + B A), the removed blocks deleted, `VideoModel.save`. Returns the model."""
    model = models.load(model_name, path=student_dir, device="cpu", dtype=torch.float32)
    if not model.lora:
        raise UserError(f"{student_dir} holds no LoRA adapter: it already is a full-weight student")
    model.merge_lora()
    model.save(out_dir)
    return model


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m models.export", allow_abbrev=False,
                                description="Merge a LoRA student's adapter into its pruned weights and write the "
                                            "full-weight student folder (what `models.load` reads as any student).")
    p.add_argument("--model", default=defaults.DEFAULT_MODEL, help=defaults.MODEL_HELP)
    p.add_argument("--student", required=True, help="a LoRA student folder (vip_loop.py --lora's stage_k/student)")
    p.add_argument("--out", required=True, help="the full-weight student folder to write")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = export(args.model, args.student, args.out)
    n = model.num_parameters()
    print(f"wrote {args.out}: {args.model} with {len(model.removed)} blocks removed, "
          f"{n['unet']:,} denoiser parameters ({n['trainable']:,} trained)")


if __name__ == "__main__":
    run_cli(main)
