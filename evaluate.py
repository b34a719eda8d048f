"""Sec. 4.1: evaluating a model (scores with 95% CIs, TFLOPs, latency) and the Table-1 report.

An evaluation generates one video per eval prompt and seed (prompt i at seed index j: seed
1000 j + i, prompt_files.eval_seeds; sharded over torchrun ranks), scores it with a reward
(rewards.py) and writes OUT/eval.json (per-dimension mean and 95% t-interval over videos,
parameter counts, TFLOPs per generated video, latency) and OUT/videos.npz
(the first few videos, for the grids). The report puts the eval.json of every stage of one or more
runs in Table 1's shape, with teacher | pruned | trained video grids. The model, reward and prompt
file default to the toy world's (defaults.py).

    python evaluate.py --out runs/demo/full                                           # toy, shapes, 18 prompts
    python evaluate.py --model tiny --reward pixel --prompts prompts/eval_prompts.csv --out runs/demo/full --limit 8
    python evaluate.py --model animatediff --out runs/NAME/full                      # VideoScore-v1.1
    python evaluate.py --model animatediff --student runs/NAME/stage_1/student --out runs/NAME/stage_1
    torchrun --nproc_per_node 4 evaluate.py --model animatediff --out runs/NAME/full  # prompts sharded
    python evaluate.py --report runs/NAME                 # runs/NAME/report.md + side-by-side video grids
    python evaluate.py --report runs/A runs/B --out runs  # several methods (runs) in one table
    python evaluate.py --vbench_results results_eval_results.json   # VBench's file -> Table 2's row
"""
import argparse
import os
import time

from infra import cli, disk, parallel, ranks
from infra.cli import UserError
from infra.prompt_files import make_eval_set, read_prompts

import numpy as np
import torch
from tqdm import tqdm

import defaults
import models
from analysis import vbench_eval
from analysis.report import fmt, videos_path, write_report
from rewards import DIMENSIONS, REWARDS, VIDEOSCORE_DTYPES, load_reward
from analysis.stats import mean_ci

# ---------------------------------------------------------------------------------------------
# Cost: TFLOPs per generated video and latency
# ---------------------------------------------------------------------------------------------

def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    """Q K^T and A V of one attention call: 2 b h s_q s_k d + 2 b h s_q s_k d_v (no softmax)."""
    b, h, s_q, d = query_shape
    return 2 * b * h * s_q * key_shape[2] * d + 2 * b * h * s_q * key_shape[2] * value_shape[3]


# FlopCounterMode counts the CUDA attention kernels but not the CPU one; count it the same way.
CPU_ATTENTION_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}


def measure_tflops(model, num_frames, height, width, steps, guidance):
    """TFLOPs to generate one video: one denoiser forward at batch 1, counted by
    torch.utils.flop_counter.FlopCounterMode, times `steps`, times 2 when classifier-free guidance
    (guidance > 1) runs the conditional and unconditional halves. Text encoder and VAE not counted."""
    from torch.utils.flop_counter import FlopCounterMode
    x_t = torch.zeros(1, *model.latent_shape(num_frames, height, width),
                      device=model.device, dtype=model.unet.dtype)            # (1, C, F, h, w)
    embeds = model.encode([""])
    t = torch.tensor([model.num_train_timesteps // 2], device=model.device)
    with torch.no_grad(), model.as_exported(), FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        model.noise_pred(x_t, t, embeds)   # a LoRA student: as merged
    forward = counter.get_total_flops() / 1e12
    cfg = 2 if guidance > 1 else 1
    return {"tflops": forward * steps * cfg, "unet_forward_tflops": forward, "steps": steps, "cfg_factor": cfg,
            "note": "one denoiser forward (batch 1) measured with FlopCounterMode x steps x CFG factor; "
                    "text encoder and VAE decode not counted"}


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(model, prompt, seed, repeats=1, **gen_kw):
    """Seconds to generate one video at batch 1 (after a warm-up), median of `repeats`. The warm-up
    is one sampler step: every op at batch 1's shapes runs once, at a tenth of a generation's cost."""
    model.generate([prompt], [seed], **dict(gen_kw, steps=1))
    times = []
    for _ in range(repeats):
        _sync(model.device)
        start = time.perf_counter()
        model.generate([prompt], [seed], **gen_kw)
        _sync(model.device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def parameter_counts(model):
    """Parameters: the whole pipeline, the denoiser, the prunable blocks still in it, the trained
    part (the paper's Param column: AnimateDiff's motion modules, VideoCrafter2's whole UNet), and
    how many blocks were removed."""
    counts = model.num_parameters()
    prunable = sum(models.count_parameters(block) for block in model.blocks().values())   # a LoRA student: as merged
    return {"total": counts["total"], "unet": counts["unet"], "prunable": prunable,
            "trainable": counts["trainable"], "removed_blocks": len(model.removed)}


# ---------------------------------------------------------------------------------------------
# Evaluation: generate the eval set (fixed seeds, sharded over ranks), score it, summarise
# ---------------------------------------------------------------------------------------------

def generation_settings(model, num_frames=None, steps=None, guidance=None, height=None, width=None):
    """The sampler settings `generate` will use (the model's defaults where not given)."""
    d = model.defaults
    given = dict(num_frames=num_frames, steps=steps, guidance=guidance, height=height, width=width)
    settings = {k: d[k] if v is None else v for k, v in given.items()}
    settings["fps"] = d.get("fps", 8)
    return settings


def evaluate_model(model, reward, videos, keep_videos=4, batch_size=4, **gen_kw):
    """Generate one video per (prompt, seed), score it, and summarise: the eval.json content
    (with_cost adds what one generation costs). videos: (prompts, seeds, static labels or None).

    Generation and scoring are sharded over torchrun ranks (ranks.shard / ranks.gather); the
    result is the same on every rank. Keys: "scores" {dimension: {"mean", "ci95" (half width of
    the 95% t-interval over prompts), "n"}}, "per_video", "params", "generation", "reward",
    "reward_note". "videos" holds the first `keep_videos` uint8 videos with their prompts and
    seeds: `save_eval` writes them to videos*.npz beside the json and leaves them out of it.
    """
    prompts, seeds, static = videos
    if len(prompts) != len(seeds) or not prompts:
        raise ValueError(f"need one seed per prompt and at least one prompt, got {len(prompts)} and {len(seeds)}")
    static = list(static) if static is not None else [None] * len(prompts)
    settings = generation_settings(model, **gen_kw)
    gen = {k: settings[k] for k in ("num_frames", "steps", "guidance", "height", "width")}
    rank, _ = ranks.rank_world()
    mine = ranks.shard(list(zip(prompts, seeds, static)))
    batches = [mine[start:start + batch_size] for start in range(0, len(mine), batch_size)]
    generated = parallel.map_batches(lambda batch: model.generate([x[1][0] for x in batch], [x[1][1] for x in batch],
                                                                  **gen)[0], batches, model)
    indexed = []
    for batch, frames in tqdm(zip(batches, generated), total=len(batches), desc="evaluate", disable=rank != 0):
        p, s, st = [x[1][0] for x in batch], [x[1][1] for x in batch], [x[1][2] for x in batch]
        scores = reward(frames, p, static=st)
        for j, (i, _) in enumerate(batch):
            indexed.append((i, {"prompt": p[j], "seed": int(s[j]), "static": st[j],
                                "scores": {k: float(v[j]) for k, v in scores.items()},
                                "video": frames[j] if i < keep_videos else None}))
    per_video = ranks.gather(indexed)
    kept = [v.pop("video") for v in per_video]
    return eval_result(model, reward, per_video, kept, **gen_kw)


def with_cost(result, model, **gen_kw):
    """evaluate_model's `result` with the cost of one generation of `model`: "tflops" and "latency"
    (measured on rank 0, the same on every rank), placed before the kept videos as eval.json holds them."""
    settings = generation_settings(model, **gen_kw)
    gen = {k: settings[k] for k in ("num_frames", "steps", "guidance", "height", "width")}
    cost, first = None, result["per_video"][0]
    if ranks.rank_world()[0] == 0:
        cost = {"tflops": measure_tflops(model, **gen),
                "latency": {"seconds_per_video": measure_latency(model, first["prompt"], first["seed"], **gen),
                            "batch": 1, "device": str(model.device)}}
    videos = result.pop("videos")
    result.update(ranks.broadcast(cost))
    result["videos"] = videos
    return result


def eval_result(model, reward, per_video, videos, **gen_kw):
    """evaluate_model's result from what generation gave: `per_video` [{"prompt", "seed", "static",
    "scores": {key: float}}] in eval-set order and `videos`, one uint8 (F, H, W, 3) or None (not
    kept) per entry: the summary and params. prune.py calls it on a candidate it has already
    generated and scored."""
    settings = generation_settings(model, **gen_kw)
    names = list(per_video[0]["scores"]) if per_video else list(DIMENSIONS) + ["total"]
    summary = {}
    for k in names:
        mean, half = mean_ci([v["scores"][k] for v in per_video])
        summary[k] = {"mean": mean, "ci95": half, "n": len(per_video)}
    result = {"model": model.name, "reward": getattr(reward, "name", "custom"),
              "reward_note": getattr(reward, "note", ""),
              "num_videos": len(per_video), "generation": settings, "scores": summary,
              "params": parameter_counts(model), "per_video": per_video}
    kept = [(v["prompt"], v["seed"], f) for v, f in zip(per_video, videos) if f is not None]
    result["videos"] = {"prompts": [x[0] for x in kept], "seeds": [x[1] for x in kept],
                        "frames": np.stack([x[2] for x in kept]) if kept else None}
    return result


def save_eval(result, json_path):
    """Rank 0 writes `result` (from evaluate_model) to json_path, and its videos beside it
    (videos_path); other ranks write nothing. Both writes are atomic, the json last: it marks
    the evaluation done (vip_loop.py), so a run killed between the two redoes both."""
    if ranks.rank_world()[0] != 0:
        return
    result = dict(result)
    videos = result.pop("videos", None)
    if videos and videos["frames"] is not None:
        path = videos_path(json_path)
        with disk.atomic_file(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, frames=videos["frames"], prompts=np.array(videos["prompts"]),
                                seeds=np.array(videos["seeds"]))
    disk.write_json(json_path, disk.json_safe(result))


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Evaluate a text-to-video model with a reward (eval.json), "
                                            "or write the Table-1 report of runs (--report).")
    p.add_argument("--model", default=defaults.DEFAULT_MODEL, help=defaults.MODEL_HELP)
    p.add_argument("--path", default=None, help=defaults.PATH_HELP)
    p.add_argument("--adapter", default=None, help=defaults.ADAPTER_HELP)
    p.add_argument("--student", default=None,
                   help="a saved student (pruned / trained) to evaluate instead of M0 (default: none, M0)")
    p.add_argument("--reward", default=None, help=defaults.REWARD_HELP)
    p.add_argument("--reward_path", default=None, help=defaults.REWARD_PATH_HELP)
    p.add_argument("--reward_dtype", default="bf16", choices=sorted(VIDEOSCORE_DTYPES),
                   help="VideoScore's dtype (default: bf16, as the official inference on every device)")
    p.add_argument("--prompts", default=None, help="eval prompts, .txt, .csv or .json with static labels "
                   f"(default: {defaults.run_default('prompts')})")
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts (default: all)")
    p.add_argument("--eval_seeds", type=int, default=1, help="videos per prompt: prompt i at seed index j has "
                   "seed 1000 j + i, as in vip_loop.py and prune.py (default: 1)")
    p.add_argument("--steps", type=int, default=None, help=defaults.steps_help(models.DEFAULTS))
    p.add_argument("--batch_size", type=int, default=4, help="videos per generate call, a speed setting (default: 4)")
    p.add_argument("--out", default=None, help="output folder: eval.json and videos.npz; with --report, where "
                   "report.md goes (default: the first RUN)")
    p.add_argument("--report", nargs="+", metavar="RUN", default=None,
                   help="write report.md for these run folders instead of evaluating (default: evaluate)")
    p.add_argument("--vbench_results", nargs="+", metavar="FILE", default=None,
                   help="summarise VBench results files (or their folders) into Table 2's row, with the revised "
                        "dynamic degree (analysis/vbench_eval.py); with --out also OUT/vbench.json (default: off)")
    return p.parse_args(argv)


def print_summary(result):
    for k, v in result["scores"].items():
        print(f"  {k:22s} {fmt(v['mean'])} +- {fmt(v['ci95'])}  (n={v['n']})")
    params = result["params"]
    print(f"  params: {params['total']:,} total, {params['prunable']:,} prunable "
          f"({params['removed_blocks']} blocks removed)")
    if "tflops" in result:
        print(f"  {result['tflops']['tflops']:.4f} TFLOPs per video ({result['tflops']['note']}); "
              f"{result['latency']['seconds_per_video']:.2f} s per video on {result['latency']['device']}")
    print(f"  reward: {result['reward']}: {result['reward_note']}")


def main(argv=None):
    args = parse_args(argv)
    disk.check_out(args.out)   # before any work
    if args.vbench_results:
        return vbench_eval.main(["--results", *args.vbench_results] + (["--out", args.out] if args.out else []))
    if args.report:
        out = os.path.join(args.out or args.report[0], "report.md")
        write_report(args.report, out)
        print(f"wrote {out}")
        return
    if args.out is None:
        raise UserError("pass --out DIR for eval.json (or --report RUN to write a report)")
    defaults.fill(args)
    if args.reward not in REWARDS:
        raise UserError(f"unknown reward {args.reward!r}: choose one of {', '.join(REWARDS)}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, not {args.limit}")
    eval_set = make_eval_set(read_prompts(args.prompts)[:args.limit], args.eval_seeds)
    rank, _, device = ranks.dist_setup()
    model = models.load(args.model, path=args.student or args.path, adapter=args.adapter, device=device)
    reward_kw = {"path": args.reward_path} if args.reward_path else {}
    reward = load_reward(args.reward, device=device, dtype=args.reward_dtype, **reward_kw)
    result = with_cost(evaluate_model(model, reward, (eval_set["prompts"], eval_set["seeds"], eval_set["static"]),
                                      batch_size=args.batch_size, steps=args.steps), model, steps=args.steps)
    result["config"] = vars(args)
    save_eval(result, os.path.join(args.out, "eval.json"))
    if rank == 0:
        print(f"wrote {os.path.join(args.out, 'eval.json')}: {result['num_videos']} videos of {args.model}"
              f"{' (' + args.student + ')' if args.student else ''}")
        print_summary(result)
    ranks.barrier()


if __name__ == "__main__":
    cli.run_cli(main)
