"""Generate a few videos with any model of the registry: `python -m models` (uint8 mp4 + gif). The
clips are scaled up by a whole factor (nearest neighbour: no pixel invented) until their shorter side
is at least 256 px, so that the toy's and tiny's 16 x 16 videos can be seen; `--scale 1` keeps them as made.

    python -m models                                    # the toy teacher on "a red circle moving left"
    python -m models --model toy --prompt "a blue square moving up" --prompt "a red circle staying still"
    python -m models --model tiny --out samples         # a tiny random AnimateDiff: the real pipeline end to end
    python -m models --model animatediff --prompt "a corgi running on the beach" --out samples
    python -m models --model videocrafter2 --path checkpoints/videocrafter2 --prompt "a corgi running"
"""
import argparse
import math
import os

import defaults
import models
from infra.cli import UserError, run_cli
from infra.disk import check_out, save_video
from infra.prompt_files import eval_seeds, read_prompts


MIN_SIDE = 256   # px: the written clips' shorter side at least this by default


def upscale(frames, scale=None):
    """(F, H, W, 3) uint8 -> (F, H s, W s, 3), each pixel repeated s x s times; s = `scale`, or the
    smallest whole factor that makes min(H, W) s >= MIN_SIDE."""
    s = scale or max(1, math.ceil(MIN_SIDE / min(frames.shape[1:3])))
    return frames.repeat(s, axis=1).repeat(s, axis=2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m models",
                                description="Generate videos with a V.I.P. model (uint8 mp4 + gif).")
    p.add_argument("--model", default=defaults.DEFAULT_MODEL, help=defaults.MODEL_HELP)
    p.add_argument("--path", default=None, help="a saved student folder, or the " + defaults.PATH_HELP)
    p.add_argument("--adapter", default=None, help=defaults.ADAPTER_HELP)
    p.add_argument("--prompt", action="append", help="a prompt (repeat the flag for more; default: the "
                   "first of the model's eval prompts, defaults.py)")
    p.add_argument("--seeds", type=int, default=1, help="videos per prompt: prompt i at seed index j has seed "
                   "1000 j + i, as every eval set (default: 1)")
    p.add_argument("--steps", type=int, default=None, help=defaults.steps_help(models.DEFAULTS))
    p.add_argument("--out", default="samples", help="output folder, one .mp4 and .gif per video (default: samples)")
    p.add_argument("--scale", type=int, default=None, help="scale the written clips up by this whole factor, "
                   f"nearest neighbour (default: the smallest that makes the shorter side at least {MIN_SIDE} px)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_out(args.out)   # before any work
    if args.scale is not None and args.scale < 1:
        raise UserError(f"--scale must be a whole factor of at least 1 (got {args.scale})")
    prompts = args.prompt or [read_prompts(defaults.for_model(args.model)["prompts"])[0]["prompt"]]
    seeds = eval_seeds(len(prompts), args.seeds)
    prompts = prompts * args.seeds                       # seed index first, as eval_seeds
    model = models.load(args.model, path=args.path, adapter=args.adapter)
    n = model.num_parameters()
    print(f"{args.model}: {n['total']:,} parameters, {len(model.blocks())} prunable blocks "
          f"({n['trainable']:,} trainable) on {model.device}")
    frames, latents = model.generate(prompts, seeds, steps=args.steps)
    for i, (prompt, seed) in enumerate(zip(prompts, seeds)):
        stem = os.path.join(args.out, f"{args.model}_{seed}_{'_'.join(prompt.split())[:40]}")
        clip = upscale(frames[i], args.scale)
        save_video(stem + ".mp4", clip, model.defaults["fps"])
        save_video(stem + ".gif", clip, model.defaults["fps"])
        print(f"wrote {stem}.mp4 and .gif: {clip.shape[2]} x {clip.shape[1]} px (made at {frames[i].shape[2]} x "
              f"{frames[i].shape[1]}, scaled x{clip.shape[1] // frames[i].shape[1]}), {clip.shape[0]} frames; "
              f"latents {tuple(latents[i].shape)}")


if __name__ == "__main__":
    run_cli(main)
