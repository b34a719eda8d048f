"""Sec. 4.1: evaluating a model (scores with 95% CIs, TFLOPs, latency) and the Table-1 report.

An evaluation generates one video per eval prompt (fixed seeds, sharded over torchrun ranks),
scores it with a reward (rewards.py) and writes OUT/eval.json (per-dimension mean and 95%
t-interval over prompts, parameter counts, TFLOPs per generated video, latency) and OUT/videos.npz
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
"""
import argparse
import math
import os
import statistics
import time

import numpy as np
import torch
from tqdm import tqdm

import defaults
import models
import runtime
from prompt_files import read_prompts
from rewards import DIMENSIONS, REWARDS, VIDEOSCORE_DEFAULT, load_reward
from runtime import UserError

# ---------------------------------------------------------------------------------------------
# Statistics: the mean and a 95% Student-t confidence interval over prompts
# ---------------------------------------------------------------------------------------------

def t_two_sided_cdf(t, df):
    """P(|T| < t) for Student's t with integer df, in closed form (Abramowitz & Stegun 26.7.3-4):
    theta = atan(t / sqrt(df)); odd df: (2/pi)(theta + sin(theta) sum_j a_j cos^(2j+1) theta),
    a_0 = 1, a_j = a_(j-1) 2j / (2j+1); even df: sin(theta) sum_j b_j cos^(2j) theta, b_0 = 1,
    b_j = b_(j-1) (2j-1) / (2j); the powers of cos(theta) run up to df - 2."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        a, power, total = 1.0, c, 0.0
        for j in range((df - 1) // 2):          # cos^1 ... cos^(df-2)
            if j > 0:
                a *= 2 * j / (2 * j + 1)
                power *= c * c
            total += a * power
        return 2 / math.pi * (theta + s * total)
    b, power, total = 1.0, 1.0, 0.0
    for j in range(df // 2):                    # cos^0 ... cos^(df-2)
        if j > 0:
            b *= (2 * j - 1) / (2 * j)
            power *= c * c
        total += b * power
    return s * total


def t_quantile(df, level=0.95):
    """The t with P(|T| < t) = level (df = 4, level 0.95: 2.776). Bisection on the exact CDF;
    above df = 200 the Cornish-Fisher expansion around the normal quantile (error < 1e-6)."""
    if df > 200:
        z = statistics.NormalDist().inv_cdf((1 + level) / 2)
        return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
    lo, hi = 0.0, 1.0
    while t_two_sided_cdf(hi, df) < level:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_two_sided_cdf(mid, df) < level else (lo, mid)
    return (lo + hi) / 2


def mean_ci(values, level=0.95):
    """(mean, half width of the level t-interval) over the finite values: mean +- t_(n-1) s / sqrt(n).
    NaN (a dimension a reward does not measure) is left out; fewer than two values: half width NaN."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float("nan")
    return float(v.mean()), float(t_quantile(len(v) - 1, level) * v.std(ddof=1) / math.sqrt(len(v)))


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
    scale = model.pipe.vae_scale_factor
    unet = model.unet
    x_t = torch.zeros(1, unet.config.in_channels, num_frames, height // scale, width // scale,
                      device=model.device, dtype=unet.dtype)                  # (1, C, F, h, w)
    embeds = model.encode([""])
    t = torch.tensor([model.num_train_timesteps // 2], device=model.device)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        model.noise_pred(x_t, t, embeds)
    forward = counter.get_total_flops() / 1e12
    cfg = 2 if guidance > 1 else 1
    return {"tflops": forward * steps * cfg, "unet_forward_tflops": forward, "steps": steps, "cfg_factor": cfg,
            "note": "one denoiser forward (batch 1) measured with FlopCounterMode x steps x CFG factor; "
                    "text encoder and VAE decode not counted"}


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(model, prompt, seed, repeats=1, **gen_kw):
    """Seconds to generate one video at batch 1 (after a warm-up), median of `repeats`."""
    model.generate([prompt], [seed], **gen_kw)
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
    prunable = sum(p.numel() for block in model.blocks().values() for p in block.parameters())
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


def evaluate_model(model, reward, prompts, seeds, static=None, keep_videos=4, batch_size=4, measure=True,
                   **gen_kw):
    """Generate one video per (prompt, seed), score it, and summarise: the eval.json content.

    Generation and scoring are sharded over torchrun ranks (runtime.shard / runtime.gather); the
    result is the same on every rank. Keys: "scores" {dimension: {"mean", "ci95" (half width of
    the 95% t-interval over prompts), "n"}}, "per_video", "params", "tflops" and "latency" (when
    `measure`), "generation", "reward", "reward_note". "videos" holds the first `keep_videos`
    uint8 videos with their prompts and seeds: `save_eval` writes them to videos*.npz beside the
    json and leaves them out of it.
    """
    if len(prompts) != len(seeds) or not prompts:
        raise ValueError(f"need one seed per prompt and at least one prompt, got {len(prompts)} and {len(seeds)}")
    static = list(static) if static is not None else [None] * len(prompts)
    settings = generation_settings(model, **gen_kw)
    gen = {k: settings[k] for k in ("num_frames", "steps", "guidance", "height", "width")}
    rank, _ = runtime.rank_world()
    mine = runtime.shard(list(zip(prompts, seeds, static)))
    indexed = []
    for start in tqdm(range(0, len(mine), batch_size), desc="evaluate", disable=rank != 0):
        batch = mine[start:start + batch_size]
        p, s, st = [x[1][0] for x in batch], [x[1][1] for x in batch], [x[1][2] for x in batch]
        frames, _ = model.generate(p, s, **gen)
        scores = reward(frames, p, static=st)
        for j, (i, _) in enumerate(batch):
            indexed.append((i, {"prompt": p[j], "seed": int(s[j]), "static": st[j],
                                "scores": {k: float(v[j]) for k, v in scores.items()},
                                "video": frames[j] if i < keep_videos else None}))
    per_video = runtime.gather(indexed)
    kept = [v.pop("video") for v in per_video]
    names = list(per_video[0]["scores"]) if per_video else list(DIMENSIONS) + ["total"]
    summary = {}
    for k in names:
        mean, half = mean_ci([v["scores"][k] for v in per_video])
        summary[k] = {"mean": mean, "ci95": half, "n": len(per_video)}
    result = {"model": model.name, "reward": getattr(reward, "name", "custom"),
              "reward_note": getattr(reward, "note", ""),
              "num_videos": len(per_video), "generation": settings, "scores": summary,
              "params": parameter_counts(model), "per_video": per_video}
    if measure:
        cost = None
        if rank == 0:
            cost = {"tflops": measure_tflops(model, **gen),
                    "latency": {"seconds_per_video": measure_latency(model, prompts[0], seeds[0], **gen),
                                "batch": 1, "device": str(model.device)}}
        result.update(runtime.broadcast(cost))
    videos = [(v["prompt"], v["seed"], f) for v, f in zip(per_video, kept) if f is not None]
    result["videos"] = {"prompts": [x[0] for x in videos], "seeds": [x[1] for x in videos],
                        "frames": np.stack([x[2] for x in videos]) if videos else None}
    return result


def videos_path(json_path):
    """Where the kept videos of an eval json live: eval.json -> videos.npz, eval_pruned.json -> videos_pruned.npz."""
    d, stem = os.path.split(os.path.splitext(json_path)[0])
    name = "videos" + stem[len("eval"):] if stem.startswith("eval") else stem + "_videos"
    return os.path.join(d, name + ".npz")


def save_eval(result, json_path):
    """Rank 0 writes `result` (from evaluate_model) to json_path, and its videos beside it
    (videos_path); other ranks write nothing. Both writes are atomic, the json last: it marks
    the evaluation done (vip_loop.py), so a run killed between the two redoes both."""
    if runtime.rank_world()[0] != 0:
        return
    result = dict(result)
    videos = result.pop("videos", None)
    if videos and videos["frames"] is not None:
        path = videos_path(json_path)
        with runtime.atomic_file(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, frames=videos["frames"], prompts=np.array(videos["prompts"]),
                                seeds=np.array(videos["seeds"]))
    runtime.write_json(json_path, runtime.json_safe(result))


# ---------------------------------------------------------------------------------------------
# The report: Table 1's shape, plus side-by-side video grids
# ---------------------------------------------------------------------------------------------

METHOD_NAMES = {"redpo": "ReDPO", "sft": "SFT", "dpo": "DPO"}
COLUMN_NAMES = {"visual_quality": "Visual Quality", "temporal_consistency": "Temporal Consistency",
                "dynamic_degree": "Dynamic Degree", "text_alignment": "Text Alignment"}


def _fmt(x, digits=3):
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _stage_dirs(run_dir):
    """[(k, path)] of runs/NAME/stage_k, by k."""
    if not os.path.isdir(run_dir):
        return []
    stages = [(int(n.split("_", 1)[1]), os.path.join(run_dir, n)) for n in os.listdir(run_dir)
              if n.startswith("stage_") and n.split("_", 1)[1].isdigit()]
    return sorted(stages)


def report_rows(run_dir):
    """Table-1 rows of one run: [(model, stage, method, eval dict, json path)]: the full model,
    then per stage the pruned model (eval_pruned.json) and the trained one (eval.json)."""
    config_path = os.path.join(run_dir, "config.json")
    config = runtime.read_json(config_path) if os.path.isfile(config_path) else {}
    method = METHOD_NAMES.get(str(config.get("method", "")).lower(), config.get("method") or "trained")
    rows = []
    full = os.path.join(run_dir, "full", "eval.json")
    if os.path.isfile(full):
        rows.append(("Full", "-", full))
    for k, stage in _stage_dirs(run_dir):
        for name, label in (("eval_pruned.json", "Pruned"), ("eval.json", method)):
            if os.path.isfile(os.path.join(stage, name)):
                rows.append((f"Stage {k}", label, os.path.join(stage, name)))
    out = []
    for stage, label, path in rows:
        result = runtime.read_json(path)
        model_name = config.get("model") or result.get("model", "?")
        out.append((model_name, stage, label, result, path))
    return out


def video_grid(videos, separator=2):
    """Side-by-side frames: [(F, H, W, 3) uint8, ...] -> (F, H, sum W + gaps, 3), white gaps between."""
    frames = min(len(v) for v in videos)
    height = max(v.shape[1] for v in videos)
    gap = np.full((frames, height, separator, 3), 255, dtype=np.uint8)
    parts = []
    for i, v in enumerate(videos):
        if i:
            parts.append(gap)
        pad = np.full((frames, height, v.shape[2], 3), 255, dtype=np.uint8)
        pad[:, :v.shape[1]] = v[:frames]
        parts.append(pad)
    return np.concatenate(parts, axis=2)


def _load_videos(json_path):
    path = videos_path(json_path)
    if not os.path.isfile(path):
        return None
    z = runtime.load_npz(path)
    return {"frames": z["frames"], "prompts": [str(p) for p in z["prompts"]], "seeds": [int(s) for s in z["seeds"]]}


def write_grids(run_dir, out_dir, max_videos=2):
    """teacher | pruned | trained for the same prompt and seed, per stage: mp4 + gif under
    out_dir/grids. Returns [(stage, prompt, gif path)]; skips stages whose videos are missing or
    were generated from other prompts / seeds."""
    full = os.path.join(run_dir, "full", "eval.json")
    teacher = _load_videos(full)
    fps = runtime.read_json(full).get("generation", {}).get("fps", 8) if os.path.isfile(full) else 8
    made = []
    if teacher is None:
        return made
    name = os.path.basename(os.path.normpath(run_dir))
    for k, stage in _stage_dirs(run_dir):
        pruned = _load_videos(os.path.join(stage, "eval_pruned.json"))
        trained = _load_videos(os.path.join(stage, "eval.json"))
        if pruned is None or trained is None:
            continue
        n = min(max_videos, len(teacher["seeds"]), len(pruned["seeds"]), len(trained["seeds"]))
        for i in range(n):
            keys = {(v["prompts"][i], v["seeds"][i]) for v in (teacher, pruned, trained)}
            if len(keys) != 1:
                continue
            grid = video_grid([teacher["frames"][i], pruned["frames"][i], trained["frames"][i]])
            stem = os.path.join(out_dir, "grids", f"{name}_stage{k}_{i}")
            runtime.save_video(stem + ".mp4", grid, fps)
            runtime.save_video(stem + ".gif", grid, fps)
            made.append((k, teacher["prompts"][i], stem + ".gif"))
    return made


def write_report(run_dirs, out_path):
    """Write report.md in Table 1's shape for one or more runs (one run = one method): rows Full,
    then Stage k Pruned / Stage k <method>; columns the four dimensions, their average and the
    trained parameters (millions). Then cost and uncertainty, and the video grids. Returns the text."""
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    header = ["Model", "Stage", "Method"] + [COLUMN_NAMES[d] for d in DIMENSIONS] + ["Average", "Param (M)"]
    lines = ["# V.I.P. results", ""]
    rows = [(run, row) for run in run_dirs for row in report_rows(run)]
    if not rows:
        raise UserError(f"no eval.json under {', '.join(run_dirs)}; run evaluate.py (or vip_loop.py) first")
    rewards = sorted({(r[3].get("reward", "?"), r[3].get("reward_note", "")) for _, r in rows})
    for name, note in rewards:
        lines.append(f"Scores: `{name}` reward. {note}")
        if name == "pixel":
            lines.append("**The pixel proxy is for smoke runs only; these numbers are not VideoScore.**")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, (model_name, stage, method, result, _) in rows:
        s = result["scores"]
        cells = [model_name, stage, method] + [_fmt(s[d]["mean"]) for d in DIMENSIONS]
        cells += [_fmt(s["total"]["mean"]), _fmt(result["params"]["trainable"] / 1e6)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Average: the mean of the four dimensions (VideoScore total). Param: the trained part "
              "(AnimateDiff: the motion modules; VideoCrafter2: the whole UNet). Static prompts score dynamic degree 0.",
              "", "| Run | Stage | Method | Average +- 95% CI | Videos | TFLOPs / video | Latency (s / video) |",
              "|---|---|---|---|---|---|---|"]
    for run, (_, stage, method, result, _) in rows:
        total = result["scores"]["total"]
        tflops = result.get("tflops", {}).get("tflops")
        tflops = "n/a" if tflops is None else f"{tflops:.4g}"
        latency = result.get("latency", {}).get("seconds_per_video")
        lines.append(f"| {os.path.basename(os.path.normpath(run))} | {stage} | {method} | "
                     f"{_fmt(total['mean'])} +- {_fmt(total['ci95'])} | {result['num_videos']} | "
                     f"{tflops} | {_fmt(latency, 2)} |")
    grids = [(run, g) for run in run_dirs for g in write_grids(run, out_dir)]
    if grids:
        lines += ["", "## Teacher | pruned | trained (same prompt and seed)", ""]
        for run, (k, prompt, gif) in grids:
            rel = os.path.relpath(gif, out_dir)
            lines.append(f"- {os.path.basename(os.path.normpath(run))}, stage {k}: \"{prompt}\"  ")
            lines.append(f"  ![{prompt}]({rel}) ([mp4]({os.path.splitext(rel)[0]}.mp4))")
    text = "\n".join(lines) + "\n"
    with runtime.atomic_file(out_path) as tmp, open(tmp, "w") as f:
        f.write(text)
    return text


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Evaluate a text-to-video model with a reward (eval.json), "
                                            "or write the Table-1 report of runs (--report).")
    p.add_argument("--model", default=defaults.DEFAULT_MODEL,
                   help=f"one of {', '.join(models.LOADERS)} (default: {defaults.DEFAULT_MODEL})")
    p.add_argument("--path", default=None, help="hub id or directory of the base model")
    p.add_argument("--adapter", default=None, help="AnimateDiff motion adapter (hub id or directory)")
    p.add_argument("--student", default=None, help="a saved student (pruned / trained) to evaluate instead")
    p.add_argument("--reward", default=None, help=f"one of {', '.join(REWARDS)} (default: the model's, defaults.py)")
    p.add_argument("--reward_path", "--reward-path", default=None,
                   help=f"VideoScore hub id or directory (default: {VIDEOSCORE_DEFAULT})")
    p.add_argument("--prompts", default=None, help="a .txt, .csv or .json prompt file (default: the model's)")
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    p.add_argument("--seed", type=int, default=0, help="prompt i uses seed + i")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--batch_size", "--batch-size", type=int, default=4)
    p.add_argument("--out", default=None, help="output folder (eval.json, videos.npz; with --report: report.md)")
    p.add_argument("--report", nargs="+", metavar="RUN", default=None, help="write report.md for these runs")
    return p.parse_args(argv)


def print_summary(result):
    for k, v in result["scores"].items():
        print(f"  {k:22s} {_fmt(v['mean'])} +- {_fmt(v['ci95'])}  (n={v['n']})")
    params = result["params"]
    print(f"  params: {params['total']:,} total, {params['prunable']:,} prunable "
          f"({params['removed_blocks']} blocks removed)")
    if "tflops" in result:
        print(f"  {result['tflops']['tflops']:.4f} TFLOPs per video ({result['tflops']['note']}); "
              f"{result['latency']['seconds_per_video']:.2f} s per video on {result['latency']['device']}")
    print(f"  reward: {result['reward']}: {result['reward_note']}")


def main(argv=None):
    args = parse_args(argv)
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
    rows = read_prompts(args.prompts)[:args.limit]
    rank, _, device = runtime.dist_setup()
    model = models.load(args.model, path=args.student or args.path, adapter=args.adapter, device=device)
    reward_kw = {"path": args.reward_path} if args.reward_path else {}
    reward = load_reward(args.reward, device=device, **reward_kw)
    result = evaluate_model(model, reward, [r["prompt"] for r in rows], [args.seed + i for i in range(len(rows))],
                            static=[r["static"] for r in rows], batch_size=args.batch_size, steps=args.steps)
    result["config"] = vars(args)
    save_eval(result, os.path.join(args.out, "eval.json"))
    if rank == 0:
        print(f"wrote {os.path.join(args.out, 'eval.json')}: {result['num_videos']} videos of {args.model}"
              f"{' (' + args.student + ')' if args.student else ''}")
        print_summary(result)
    runtime.barrier()


if __name__ == "__main__":
    runtime.run_cli(main)
