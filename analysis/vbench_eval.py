"""Sec. 4.1 and Table 2: VBench's Quality, Semantic and Total scores, with the revised dynamic score.

VBench (Huang et al., CVPR 2024) scores a model on its own prompt suite (946 prompts, 16
dimensions, 5 videos a prompt). This file generates that suite with a project model (sharded over
torchrun ranks), writes the videos as VBench reads them (`{prompt}-{i}.mp4` at the model's fps), runs
VBench in its own environment (scripts/vbench_env.sh) through its Python API, one dimension at a
time (scripts/vbench_run.py; over every GPU when there are several, on the CPU when there is none),
and writes Table 2's row to OUT/vbench.json; `evaluate.py --report` puts it in report.md.

Aggregation, as VBench's repository (scripts/constant.py, scripts/cal_final_score.py): each dimension
is min-max normalised with VBench's fixed bounds, Quality is the weighted mean of the 7 quality
dimensions (dynamic degree weighted 0.5, the others 1), Semantic the mean of the 9 semantic ones,
Total = (4 Quality + 1 Semantic) / 5.

The revised dynamic score (Sec. 4.1): VBench's 72 dynamic-degree prompts labelled static or dynamic
(prompts/vbench_dynamic_labels.csv, the rule at its top); a static prompt's videos score 0 (rule
"zero"; rule "match" scores them 1 when they stay still instead). The row reports both dynamic
degrees; Quality uses the revised one when the videos' prompts are labelled, quality_vbench VBench's.

    bash scripts/vbench_env.sh                                                   # once: VBench's own venv
    python -m analysis.vbench_eval --model toy --dimensions temporal_flickering --limit 4 --out runs/demo/full
    python -m analysis.vbench_eval --model animatediff --dimensions quality --out runs/NAME/full    # Table 2's columns
    python -m analysis.vbench_eval --model animatediff --student runs/NAME/stage_3/student --out runs/NAME/stage_3
    torchrun --nproc_per_node 8 -m analysis.vbench_eval --model videocrafter2 --path ckpt/vc2 --out runs/NAME/full
    python evaluate.py --vbench_results results_eval_results.json    # Table 2's row of a file made anywhere
"""
import argparse
import glob
import math
import os
import re
import subprocess
import time

from infra import cli, disk, ranks
from infra.cli import UserError
from infra.prompt_files import read_prompts

import defaults

# ---------------------------------------------------------------------------------------------
# VBench's aggregation (its repository's scripts/constant.py and scripts/cal_final_score.py)
# ---------------------------------------------------------------------------------------------

QUALITY = ("subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness",
           "dynamic_degree", "aesthetic_quality", "imaging_quality")
SEMANTIC = ("object_class", "multiple_objects", "human_action", "color", "spatial_relationship", "scene",
            "appearance_style", "temporal_style", "overall_consistency")
DIMENSIONS = QUALITY + SEMANTIC
GROUPS = {"quality": QUALITY, "semantic": SEMANTIC, "all": DIMENSIONS}
# (min, max) of each dimension over the models VBench calibrated on; normalised = (x - min) / (max - min)
NORMALIZE = {"subject_consistency": (0.1462, 1.0), "background_consistency": (0.2615, 1.0),
             "temporal_flickering": (0.6293, 1.0), "motion_smoothness": (0.706, 0.9975),
             "scene": (0.0, 0.8222), "appearance_style": (0.0009, 0.2855), "temporal_style": (0.0, 0.364),
             "overall_consistency": (0.0, 0.364)}          # every other dimension: (0, 1)
WEIGHT = {"dynamic_degree": 0.5}                          # every other dimension: 1
QUALITY_WEIGHT, SEMANTIC_WEIGHT = 4, 1
EXIT_GRACE = 60                                           # s a VBench process may take to exit after its results
SEEDS_PER_PROMPT = 5                                      # VBench's suite: 5 videos a prompt
LABELS = os.path.join(disk.ROOT, "prompts", "vbench_dynamic_labels.csv")
DYNAMIC_RULES = ("zero", "match")
# Table 2's columns: (key in the row, header)
TABLE2 = (("quality", "Quality"), ("semantic", "Semantic"), ("total", "Total"),
          ("subject_consistency", "Subject"), ("background_consistency", "Background"),
          ("temporal_flickering", "Flickering"), ("motion_smoothness", "Smoothness"),
          ("dynamic_degree", "Dynamic (revised)"), ("dynamic_degree_vbench", "Dynamic (VBench)"),
          ("aesthetic_quality", "Aesthetic"), ("imaging_quality", "Imaging"))


def normalized(dim, x):
    lo, hi = NORMALIZE.get(dim, (0.0, 1.0))
    return (x - lo) / (hi - lo)


def weighted_score(scores, dims):
    """sum_d w_d norm_d(x_d) / sum_d w_d over `dims`; None when one of them was not evaluated."""
    if any(scores.get(d) is None for d in dims):
        return None
    return sum(WEIGHT.get(d, 1) * normalized(d, scores[d]) for d in dims) / sum(WEIGHT.get(d, 1) for d in dims)


def total_score(quality, semantic):
    """Total = (4 Quality + 1 Semantic) / 5; None unless both are known."""
    if quality is None or semantic is None:
        return None
    return (QUALITY_WEIGHT * quality + SEMANTIC_WEIGHT * semantic) / (QUALITY_WEIGHT + SEMANTIC_WEIGHT)


def scores_of(scores):
    """{"quality", "semantic", "total"} of raw per-dimension means in [0, 1]."""
    q, s = weighted_score(scores, QUALITY), weighted_score(scores, SEMANTIC)
    return {"quality": q, "semantic": s, "total": total_score(q, s)}


# ---------------------------------------------------------------------------------------------
# The revised dynamic score
# ---------------------------------------------------------------------------------------------

def prompt_of(video_path):
    """VBench's rule: `{prompt}-{i}.mp4` -> prompt (a name without `-i` is the prompt itself)."""
    stem = os.path.splitext(os.path.basename(video_path))[0]
    return re.sub(r"-\d+$", "", stem)


def read_labels(path=LABELS):
    """{prompt: True (static) / False (dynamic)} from a prompt file with a `static` column."""
    rows = read_prompts(path)
    unlabelled = [r["prompt"] for r in rows if r["static"] is None]
    if unlabelled:
        raise UserError(f"{path}: {len(unlabelled)} prompts have no static label (first: {unlabelled[0]!r}); "
                        "write true or false in the static column")
    return {r["prompt"]: r["static"] for r in rows}


def revised_video_score(moved, static, rule="zero"):
    """One video's revised dynamic degree: a dynamic prompt keeps VBench's 0/1 (did it move);
    a static prompt scores 0 ("zero"), or 1 when the video stays still ("match")."""
    if rule not in DYNAMIC_RULES:
        raise ValueError(f"unknown dynamic rule {rule!r}: choose one of {', '.join(DYNAMIC_RULES)}")
    if not static:
        return float(moved)
    return 0.0 if rule == "zero" else float(not moved)


def dynamic_degrees(video_results, labels, rule="zero"):
    """VBench's dynamic degree (the share of videos that move) and the revised one, from VBench's
    per-video results [{"video_path", "video_results": bool}]. The revised one is None when a
    video's prompt has no label; "unlabelled" counts those videos."""
    moved = [bool(v["video_results"]) for v in video_results]
    prompts = [prompt_of(v["video_path"]) for v in video_results]
    unknown = [p for p in prompts if p not in labels]
    out = {"dynamic_degree_vbench": sum(moved) / len(moved) if moved else None, "dynamic_rule": rule,
           "static_videos": sum(bool(labels.get(p)) for p in prompts), "videos": len(moved),
           "unlabelled": len(unknown), "dynamic_degree_revised": None}
    if moved and not unknown:
        revised = [revised_video_score(m, labels[p], rule) for m, p in zip(moved, prompts)]
        out["dynamic_degree_revised"] = sum(revised) / len(revised)
    return out


# ---------------------------------------------------------------------------------------------
# VBench's results file -> Table 2's row
# ---------------------------------------------------------------------------------------------

def results_files(paths):
    """The `*_eval_results.json` files named, or found in the folders named."""
    found = []
    for p in paths:
        found += sorted(glob.glob(os.path.join(p, "*_eval_results.json"))) if os.path.isdir(p) else [p]
    if not found:
        raise UserError(f"no *_eval_results.json in {', '.join(paths)}; pass VBench's results file or its folder")
    return found


def read_results(paths):
    """{dimension: (mean, per-video list)} merged from VBench results files
    ({dimension: [mean, [{"video_path", "video_results"}, ...]]})."""
    merged = {}
    for path in results_files(paths):
        fix = "pass the *_eval_results.json that VBench's evaluate wrote"
        data = disk.read_json(path, fix)
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a VBench results file (a JSON object of dimensions); {fix}")
        for dim, value in data.items():
            if dim not in DIMENSIONS or not isinstance(value, list) or len(value) != 2:
                raise UserError(f"{path}: {dim!r} is not a VBench dimension with [mean, per-video results]; {fix}")
            merged[dim] = (value[0], value[1])
    return merged


def table2_row(results, labels=None, rule="zero"):
    """Table 2's row from read_results(): raw per-dimension means, both dynamic degrees, and
    Quality / Semantic / Total (with the revised dynamic degree when every dynamic-degree video's
    prompt is labelled; the *_vbench keys with VBench's own)."""
    raw = {d: (float(m) if m is not None and not (isinstance(m, float) and math.isnan(m)) else None)
           for d, (m, _) in results.items()}
    row = {"dimensions": raw}
    if "dynamic_degree" in results:
        dyn = dynamic_degrees(results["dynamic_degree"][1], labels or {}, rule)
        row["dynamic"] = dyn
        raw_revised = dict(raw, dynamic_degree=dyn["dynamic_degree_revised"])
    else:
        raw_revised = raw
    vbench = scores_of(raw)
    revised = scores_of(raw_revised) if raw_revised.get("dynamic_degree") is not None else vbench
    row.update(revised)
    row.update({f"{k}_vbench": v for k, v in vbench.items()})
    row.update({d: raw_revised.get(d) for d in DIMENSIONS})
    row["dynamic_degree_vbench"] = raw.get("dynamic_degree")
    row["missing"] = [d for d in DIMENSIONS if raw.get(d) is None]
    return row


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.1f}"


def table2_lines(rows):
    """Markdown Table 2: [(label cells, row)] -> lines, scores in percent as the paper prints them."""
    if not rows:
        return []
    labels = len(rows[0][0])
    head = ["Model", "Method", "Stage"][:labels] + [h for _, h in TABLE2]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cells, row in rows:
        lines.append("| " + " | ".join(list(cells) + [_pct(row.get(k)) for k, _ in TABLE2]) + " |")
    return lines


def row_notes(row):
    """One line on what the row holds: missing dimensions, how the dynamic degree was revised."""
    notes = []
    dyn = row.get("dynamic")
    if dyn and dyn["dynamic_degree_revised"] is not None:
        notes.append(f"revised dynamic degree: {dyn['static_videos']} of {dyn['videos']} videos from static "
                     f"prompts, rule {dyn['dynamic_rule']!r}; Quality with VBench's own: {_pct(row['quality_vbench'])}")
    elif dyn:
        notes.append(f"revised dynamic degree n/a: {dyn['unlabelled']} videos' prompts are not labelled")
    quality = [d for d in QUALITY if d in row["missing"]]
    semantic = [d for d in SEMANTIC if d in row["missing"]]
    if quality:
        notes.append(f"not evaluated: {', '.join(quality)}")
    if semantic:
        notes.append(f"{len(semantic)} of {len(SEMANTIC)} semantic dimensions not evaluated")
    return "; ".join(notes)


def report_lines(runs):
    """analysis/report.py's Table 2 section: a row per vbench.json found in the runs' full/ and stage_k/
    folders (analysis/vbench_eval.py --out), [] when there is none."""
    rows = []
    for run in runs:
        folders = [("Full", os.path.join(run["dir"], "full"))]
        folders += [(f"Stage {s['k']}", os.path.join(run["dir"], f"stage_{s['k']}")) for s in run["stages"]]
        for stage, folder in folders:
            path = os.path.join(folder, "vbench.json")
            if os.path.isfile(path):
                row = disk.read_json(path)["row"]
                label = "-" if stage == "Full" else run["label"]
                rows.append(((run["model"], label, stage), row))
    if not rows:
        return []
    notes = [f"- {' '.join(cells)}: {row_notes(row)}" for cells, row in rows if row_notes(row)]
    return (["## Table 2 (VBench)", ""] + table2_lines(rows) + [""] +
            ["Scores in percent. Quality = weighted mean of the 7 quality dimensions after VBench's min-max "
             "normalisation (dynamic degree weighted 0.5), Semantic = mean of the 9 semantic ones, "
             "Total = (4 Quality + Semantic) / 5 (analysis/vbench_eval.py)."] + notes)


def summarise(paths, labels_path=LABELS, rule="zero"):
    """Table 2's row of existing VBench results files: `evaluate.py --vbench_results FILE`."""
    return table2_row(read_results(paths), read_labels(labels_path), rule)


# ---------------------------------------------------------------------------------------------
# The prompt suite and its videos
# ---------------------------------------------------------------------------------------------

def parse_dimensions(names):
    """["quality", "temporal_flickering", ...] -> dimension names in VBench's order."""
    chosen = set()
    for name in names:
        if name not in GROUPS and name not in DIMENSIONS:
            raise UserError(f"unknown VBench dimension {name!r}: choose from {', '.join(GROUPS)}, "
                            f"{', '.join(DIMENSIONS)}")
        chosen |= set(GROUPS.get(name, (name,)))
    return [d for d in DIMENSIONS if d in chosen]


def suite(full_info, dimensions, limit=None):
    """The entries of VBench's full info list that any of `dimensions` reads (their `dimension`
    narrowed to those), the first `limit` of them."""
    picked = []
    for entry in full_info:
        dims = [d for d in entry["dimension"] if d in dimensions]
        if dims:
            picked.append(dict(entry, dimension=dims))
    return picked[:limit]


def video_name(prompt, i):
    """The file VBench's standard mode looks for: `{prompt}-{i}.mp4`."""
    if "/" in prompt or "\0" in prompt:
        raise UserError(f"prompt {prompt!r} cannot be a file name; VBench reads prompts from file names")
    return f"{prompt}-{i}.mp4"


def jobs(entries, seeds_per_prompt, videos_dir):
    """[(prompt, file name, seed)] of the videos not yet written. Video i of prompt p has seed
    1000 i + p, the project's eval-set convention (prompt_files.eval_seeds)."""
    todo = []
    for p, entry in enumerate(entries):
        for i in range(seeds_per_prompt):
            name = video_name(entry["prompt_en"], i)
            if not os.path.isfile(os.path.join(videos_dir, name)):
                todo.append((entry["prompt_en"], name, 1000 * i + p))
    return todo


def generate_videos(model, todo, videos_dir, batch_size=4, steps=None):
    """Generate this rank's share of `todo` (ranks.shard) and write each video as an mp4 at the
    model's fps (atomic: a killed run leaves whole videos only, and the next one writes the rest)."""
    from tqdm import tqdm
    mine = [job for _, job in ranks.shard(todo)]
    fps = model.defaults["fps"]
    for start in tqdm(range(0, len(mine), batch_size), desc="vbench videos",
                      disable=ranks.rank_world()[0] != 0):
        batch = mine[start:start + batch_size]
        frames, _ = model.generate([b[0] for b in batch], [b[2] for b in batch], steps=steps)  # (B, F, H, W, 3)
        for (_, name, _), video in zip(batch, frames):
            disk.save_video(os.path.join(videos_dir, name), video, fps)


# ---------------------------------------------------------------------------------------------
# VBench in its own environment
# ---------------------------------------------------------------------------------------------

def vbench_python(venv):
    python = os.path.join(venv, "bin", "python")
    if not os.path.isfile(python):
        raise UserError(f"no VBench environment at {venv}; fix: bash scripts/vbench_env.sh "
                        "(or pass --vbench_env / set VBENCH_VENV to one)")
    return python


def wheel_full_info(venv):
    """The prompt suite inside the installed vbench wheel (VBench_full_info.json)."""
    found = sorted(glob.glob(os.path.join(venv, "lib", "python*", "site-packages", "vbench", "VBench_full_info.json")))
    if not found:
        raise UserError(f"{venv} has no vbench package; fix: bash scripts/vbench_env.sh (or pass --full_info)")
    return found[0]


def child_env():
    """The environment for VBench's processes: without this run's torchrun variables (a VBench run
    over several GPUs makes its own group)."""
    drop = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
            "ROLE_RANK", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("TORCHELASTIC_")}


def finished(path, dimension, expected):
    """Whether `path` holds VBench's results of `dimension` over `expected` videos: a run with
    another --limit or --seeds_per_prompt, or a damaged file, is done again."""
    data = disk.read_or_none(disk.read_json, path, f"running VBench's {dimension} again")
    try:
        return len(data[dimension][1]) == expected
    except (TypeError, KeyError, IndexError):
        return False


def run_vbench(venv, videos_dir, suite_json, dimension, results_dir, gpus=0):
    """Run one VBench dimension (scripts/vbench_run.py in VBench's environment; torchrun over
    `gpus` GPUs when more than one). Returns the seconds it took; its output goes to
    results_dir/<dimension>.log; a failure is its one-line error as a UserError."""
    python = vbench_python(venv)
    worker = os.path.join(disk.ROOT, "scripts", "vbench_run.py")
    args = ["--videos", videos_dir, "--full_info", suite_json, "--dimension", dimension, "--out", results_dir]
    if gpus > 1:
        cmd = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", worker, *args]
    else:
        cmd = [python, worker, *args]
    log = os.path.join(results_dir, f"{dimension}.log")
    results = os.path.join(results_dir, f"{dimension}_eval_results.json")
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=child_env(), cwd=disk.ROOT)
        written, hung = None, False
        while proc.poll() is None:           # a process that wrote its results but does not exit is ended
            time.sleep(0.5)
            written = written or (time.perf_counter() if os.path.isfile(results) else None)
            if written and time.perf_counter() - written > EXIT_GRACE:
                proc.kill()
                proc.wait()
                hung = True
    seconds = time.perf_counter() - start
    if proc.returncode != 0 and not hung:
        lines = [line.strip() for line in open(log, errors="replace") if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        raise UserError(errors[-1][len("error: "):] if errors else
                        f"VBench failed on {dimension} ({lines[-1] if lines else 'no output'}); see {log}")
    return seconds


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description="VBench's Table 2 for a model: generate VBench's prompt suite, "
                                            "score it with VBench in its own environment, write OUT/vbench.json.",
                                allow_abbrev=False)
    p.add_argument("--model", default=defaults.DEFAULT_MODEL,
                   help=f"a model of models.LOADERS (default: {defaults.DEFAULT_MODEL})")
    p.add_argument("--path", default=None, help="hub id or directory of the base model (default: the model's)")
    p.add_argument("--adapter", default=None, help="AnimateDiff motion adapter (default: the model's)")
    p.add_argument("--student", default=None,
                   help="a saved student (pruned / trained) to evaluate instead of M0 (default: none, M0)")
    p.add_argument("--dimensions", nargs="+", default=["all"],
                   help=f"VBench dimensions, or the groups {', '.join(GROUPS)} (default: all)")
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts of the suite (default: all)")
    p.add_argument("--seeds_per_prompt", type=int, default=SEEDS_PER_PROMPT,
                   help=f"videos per prompt (default: {SEEDS_PER_PROMPT}, as VBench)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--gen_batch", type=int, default=4, help="videos per generate call, a speed setting (default: 4)")
    p.add_argument("--out", default=None, help="output folder: vbench.json, vbench/ (videos, results, logs) "
                   "(default: none; required unless --results)")
    p.add_argument("--vbench_env",
                   default=os.environ.get("VBENCH_VENV", os.path.join(disk.ROOT, ".venv-vbench")),
                   help="VBench's virtual environment (default: $VBENCH_VENV, else .venv-vbench in the repository)")
    p.add_argument("--full_info", default=None,
                   help="VBench's prompt suite (default: VBench_full_info.json of the environment's vbench)")
    p.add_argument("--labels", default=LABELS, help="static/dynamic labels of the dynamic-degree prompts "
                   "(default: prompts/vbench_dynamic_labels.csv)")
    p.add_argument("--dynamic_rule", default="zero", choices=DYNAMIC_RULES,
                   help="a static prompt's video scores 0 (zero), or 1 when it stays still (match) (default: zero)")
    p.add_argument("--results", nargs="+", default=None, metavar="FILE",
                   help="only summarise these VBench results files (or folders) into Table 2's row (default: "
                        "generate and evaluate)")
    return p.parse_args(argv)


def print_row(row, label="this model"):
    print("\n".join(table2_lines([((label,), row)])).replace("| Model |", "| Row |", 1))
    if row_notes(row):
        print(row_notes(row))


def main(argv=None):
    args = parse_args(argv)
    if args.results:
        row = summarise(args.results, args.labels, args.dynamic_rule)
        if args.out:
            disk.write_json(os.path.join(args.out, "vbench.json"), {"row": row, "results": args.results})
        print_row(row, os.path.basename(args.results[0]))
        return
    if args.out is None:
        raise UserError("pass --out DIR for vbench.json and the videos (or --results FILE to summarise one)")
    if (args.limit is not None and args.limit < 1) or args.seeds_per_prompt < 1:
        raise UserError("--limit and --seeds_per_prompt must be at least 1")
    dimensions = parse_dimensions(args.dimensions)
    labels = read_labels(args.labels)
    vbench_python(args.vbench_env)                     # fail before generating, not after
    full_info = args.full_info or wheel_full_info(args.vbench_env)
    entries = suite(disk.read_json(full_info, "pass VBench's VBench_full_info.json"), dimensions, args.limit)
    work = os.path.join(args.out, "vbench")
    videos_dir, results_dir = os.path.join(work, "videos"), os.path.join(work, "results")
    suite_json = os.path.join(work, "suite.json")
    rank, _, device = ranks.dist_setup()
    if rank == 0:
        os.makedirs(videos_dir, exist_ok=True)
        os.makedirs(results_dir, exist_ok=True)
        disk.remove_stale_temps(videos_dir)
        disk.write_json(suite_json, entries)
    ranks.barrier()
    todo = jobs(entries, args.seeds_per_prompt, videos_dir)
    import models
    model = models.load(args.model, path=args.student or args.path, adapter=args.adapter, device=device)
    generation = dict(model.defaults, steps=args.steps or model.defaults["steps"])
    if todo:
        generate_videos(model, todo, videos_dir, args.gen_batch, args.steps)
    del model
    ranks.barrier()
    if rank != 0:
        return                                         # VBench runs once, from rank 0, over every GPU
    import torch
    torch.cuda.empty_cache()
    gpus = torch.cuda.device_count()
    timing = os.path.join(results_dir, "seconds.json")
    seconds = disk.read_json(timing) if os.path.isfile(timing) else {}
    for dim in dimensions:
        expected = args.seeds_per_prompt * sum(dim in e["dimension"] for e in entries)
        if not finished(os.path.join(results_dir, f"{dim}_eval_results.json"), dim, expected):
            seconds[dim] = run_vbench(args.vbench_env, os.path.abspath(videos_dir), os.path.abspath(suite_json),
                                      dim, os.path.abspath(results_dir), gpus)
            disk.write_json(timing, seconds)
            print(f"VBench {dim}: {seconds[dim]:.1f} s")
    results = read_results([os.path.join(results_dir, f"{d}_eval_results.json") for d in dimensions])
    row = table2_row(results, labels, args.dynamic_rule)
    out = {"row": row, "model": args.model, "student": args.student, "generation": generation,
           "prompts": len(entries), "videos": len(entries) * args.seeds_per_prompt, "dimensions": dimensions,
           "seconds": seconds, "device": "cuda" if gpus else "cpu", "gpus": gpus, "config": vars(args)}
    disk.write_json(os.path.join(args.out, "vbench.json"), disk.json_safe(out))
    print(f"wrote {os.path.join(args.out, 'vbench.json')}: {out['videos']} videos of {args.model}, "
          f"{len(dimensions)} dimensions")
    print_row(row, args.model)


if __name__ == "__main__":
    cli.run_cli(main)
