"""Generate a few videos with any model of the registry: `python -m models` (uint8 mp4 + gif).

    python -m models                                    # the toy teacher on "a red circle moving left"
    python -m models --model toy --prompt "a blue square moving up" --prompt "a red circle staying still"
    python -m models --model tiny --out samples         # a tiny random AnimateDiff: the real pipeline end to end
    python -m models --model animatediff --prompt "a corgi running on the beach" --out samples
    python -m models --model videocrafter2 --path checkpoints/videocrafter2 --prompt "a corgi running"
"""
import argparse
import os

import defaults
import models
from infra.cli import run_cli
from infra.disk import save_video
from infra.prompt_files import eval_seeds, read_prompts


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m models", allow_abbrev=False,
                                description="Generate videos with a V.I.P. model (uint8 mp4 + gif), at the "
                                "model's own sampler settings (models.DEFAULTS).")
    p.add_argument("--model", default=defaults.DEFAULT_MODEL, help=defaults.MODEL_HELP)
    p.add_argument("--path", default=None, help="a saved student folder, or the " + defaults.PATH_HELP)
    p.add_argument("--adapter", default=None, help=defaults.ADAPTER_HELP)
    p.add_argument("--prompt", action="append", help="a prompt (repeat the flag for more; default: the "
                   "first of the model's eval prompts, defaults.py)")
    p.add_argument("--eval_seeds", type=int, default=1, help="videos per prompt: prompt i at seed index j has seed "
                   "1000 j + i, as every eval set (default: 1, one video a prompt)")
    p.add_argument("--steps", type=int, default=None, help=defaults.steps_help(models.DEFAULTS))
    p.add_argument("--out", default="samples", help="output folder, one .mp4 and .gif per video (default: samples)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    prompts = args.prompt or [read_prompts(defaults.for_model(args.model)["prompts"])[0]["prompt"]]
    seeds = eval_seeds(len(prompts), args.eval_seeds)
    prompts = prompts * args.eval_seeds                  # seed index first, as eval_seeds
    model = models.load(args.model, path=args.path, adapter=args.adapter)
    n = model.num_parameters()
    print(f"{args.model}: {n['total']:,} parameters, {len(model.blocks())} prunable blocks "
          f"({n['trainable']:,} trainable) on {model.device}")
    frames, latents = model.generate(prompts, seeds, steps=args.steps)
    for i, (prompt, seed) in enumerate(zip(prompts, seeds)):
        stem = os.path.join(args.out, f"{args.model}_{seed}_{'_'.join(prompt.split())[:40]}")
        save_video(stem + ".mp4", frames[i], model.defaults["fps"])
        save_video(stem + ".gif", frames[i], model.defaults["fps"])
        print(f"wrote {stem}.mp4 and .gif: frames {tuple(frames[i].shape)}, latents {tuple(latents[i].shape)}")


if __name__ == "__main__":
    run_cli(main)
