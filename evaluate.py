"""Sec. 4.1: evaluating a model (scores with 95% CIs, TFLOPs, latency) and the Table-1 report.

An evaluation generates one video per eval prompt and seed (prompt i at seed index j: seed
1000 j + i, prompt_files.eval_seeds; sharded over torchrun ranks), scores it with a reward
(rewards.py) and writes OUT/eval.json (per-dimension mean and 95% t-interval over videos,
parameter counts, TFLOPs per generated video, latency: infra/cost.py) and OUT/videos.npz
(the first few videos, for the grids). The report puts the eval.json of every stage of one or more
runs in Table 1's shape, with teacher | pruned | trained video grids. Unset flags follow the
model's preset (defaults.py), the toy world's by default, as in vip_loop.py.

    python evaluate.py --out runs/demo/full                       # toy: the loop's eval row, 18 prompts x 4 seeds
    python evaluate.py --model tiny --reward pixel --prompts prompts/eval_prompts.csv --out runs/demo/full --eval_prompts 8
    python evaluate.py --model animatediff --out runs/NAME/full                      # VideoScore-v1.1
    python evaluate.py --model animatediff --student runs/NAME/stage_1/student --out runs/NAME/stage_1
    torchrun --nproc_per_node 4 evaluate.py --model animatediff --out runs/NAME/full  # prompts sharded
    python evaluate.py --report runs/NAME                 # runs/NAME/report.md + side-by-side video grids
    python evaluate.py --report runs/A runs/B --out runs  # several methods (runs) in one table
    python evaluate.py --vbench_results results_eval_results.json   # VBench's file -> Table 2's row
"""
import argparse
import os

from infra import cli, cost, disk, generation, ranks
from infra.cli import UserError
from infra.prompt_files import make_eval_set, read_prompts
from infra.run_folder import videos_path

import numpy as np

import defaults
import models
from analysis import vbench_eval
from analysis.report import fmt, write_report
from analysis.stats import mean_ci
from rewards import DIMENSIONS, REWARDS, VIDEOSCORE_DTYPES, load_reward_beside, per_video


def evaluate_model(model, reward, videos, keep_videos=4, batch_size=4, **gen_kw):
    """Generate one video per (prompt, seed), score it, and summarise: the eval.json content
    (with_cost adds what one generation costs). videos: (prompts, seeds, static labels or None).

    Generation and scoring run in fixed batches shared over torchrun ranks and their threads
    (infra/generation.py); the result is the same on every rank. Keys: "scores" {dimension: {"mean",
    "ci95" (half width of the 95% t-interval over videos), "n"}}, "per_video", "params",
    "generation", "reward", "reward_note". "videos" holds the first `keep_videos` uint8 videos with
    their prompts and seeds: `save_eval` writes them to videos*.npz beside the json and leaves them out of it.
    """
    prompts, seeds, static = videos
    if len(prompts) != len(seeds) or not prompts:
        raise ValueError(f"need one seed per prompt and at least one prompt, got {len(prompts)} and {len(seeds)}")
    static = list(static) if static is not None else [None] * len(prompts)
    sampler = generation.sampler_settings(model, gen_kw)

    def generate_and_score(idx):    # one fixed batch of the eval set
        batch_prompts, batch_static = [prompts[i] for i in idx], [static[i] for i in idx]
        frames, _ = model.generate(batch_prompts, [seeds[i] for i in idx], **sampler)  # (B, F, H, W, 3) uint8
        scores = per_video(reward(frames, batch_prompts, static=batch_static), len(idx))
        return [{"prompt": prompts[i], "seed": int(seeds[i]), "static": static[i], "scores": scores[j],
                 "video": frames[j] if i < keep_videos else None} for j, i in enumerate(idx)]

    jobs = generation.batches(len(prompts), batch_size)
    mine = [made for _, done in generation.rounds(generate_and_score, jobs, [model], "evaluate") for made in done]
    rows = [row for batch in ranks.gather(mine) for row in batch]     # eval-set order on every rank
    kept = [row.pop("video") for row in rows]
    return eval_result(model, reward, rows, kept, **gen_kw)


def eval_result(model, reward, per_video_rows, videos, **gen_kw):
    """evaluate_model's result from what generation gave: `per_video_rows` [{"prompt", "seed",
    "static", "scores": {key: float}}] in eval-set order and `videos`, one uint8 (F, H, W, 3) or None
    (not kept) per entry: the summary and params. prune.py calls it on a candidate it has already
    generated and scored."""
    names = list(per_video_rows[0]["scores"]) if per_video_rows else list(DIMENSIONS) + ["total"]
    summary = {}
    for k in names:
        mean, half = mean_ci([row["scores"][k] for row in per_video_rows])
        summary[k] = {"mean": mean, "ci95": half, "n": len(per_video_rows)}
    result = {"model": model.name, "reward": getattr(reward, "name", "custom"),
              "reward_note": getattr(reward, "note", ""),
              "num_videos": len(per_video_rows), "generation": generation.generation_settings(model, gen_kw),
              "scores": summary, "params": cost.parameter_counts(model), "per_video": per_video_rows}
    kept = [(row["prompt"], row["seed"], video) for row, video in zip(per_video_rows, videos) if video is not None]
    result["videos"] = {"prompts": [prompt for prompt, _, _ in kept], "seeds": [seed for _, seed, _ in kept],
                        "frames": np.stack([video for _, _, video in kept]) if kept else None}
    return result


def with_cost(result, model, **gen_kw):
    """evaluate_model's `result` with the cost of one generation of `model` (infra/cost.py): "tflops"
    and "latency" (measured on rank 0, the same on every rank), placed before the kept videos as
    eval.json holds them."""
    sampler = generation.sampler_settings(model, gen_kw)
    measured, first = None, result["per_video"][0]
    if ranks.rank_world()[0] == 0:
        measured = {"tflops": cost.measure_tflops(model, **sampler),
                    "latency": {"seconds_per_video": cost.measure_latency(model, first["prompt"], first["seed"], **sampler),
                                "batch": 1, "device": str(model.device)}}
    videos = result.pop("videos")
    result.update(ranks.broadcast(measured))
    result["videos"] = videos
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

# The flags evaluate.py shares with vip_loop.py (defaults.FLAGS).
FLAGS = ("model", "path", "adapter", "reward", "reward_path", "reward_dtype", "prompts", "eval_prompts", "eval_seeds",
         "steps", "gen_batch")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Evaluate a text-to-video model with a reward (eval.json), or write the "
                                "Table-1 report of runs (--report); unset flags follow the model's preset, as in "
                                "vip_loop.py.", allow_abbrev=False)
    defaults.add_flags(p, FLAGS, models.DEFAULTS, reward_dtype={"choices": sorted(VIDEOSCORE_DTYPES)})
    p.add_argument("--student", default=None,
                   help="a saved student (pruned / trained) to evaluate instead of M0 (default: none, M0)")
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
    eval_set = make_eval_set(read_prompts(args.prompts)[:args.eval_prompts], args.eval_seeds)
    rank, _, device = ranks.dist_setup()
    model = models.load(args.model, path=args.student or args.path, adapter=args.adapter, device=device)
    reward = load_reward_beside(model, args.reward, device, path=args.reward_path, dtype=args.reward_dtype)
    result = with_cost(evaluate_model(model, reward, (eval_set["prompts"], eval_set["seeds"], eval_set["static"]),
                                      batch_size=args.gen_batch, steps=args.steps), model, steps=args.steps)
    result["config"] = vars(args)
    save_eval(result, os.path.join(args.out, "eval.json"))
    if rank == 0:
        print(f"wrote {os.path.join(args.out, 'eval.json')}: {result['num_videos']} videos of {args.model}"
              f"{' (' + args.student + ')' if args.student else ''}")
        print_summary(result)
    ranks.barrier()


if __name__ == "__main__":
    cli.run_cli(main)
