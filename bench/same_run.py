"""Benchmark check (not a test): are two runs of vip_loop.py the same run, number for number?

A speed-up must not change the science (docs/speed/README.md). This reads two run folders (say the
default run of this checkout, and the shipped `docs/shapes/runs/redpo-s0` or an older commit's run)
and prints, for every file both hold, the largest |difference|:

    eval rows     every eval json (full/, stage_k/eval_pruned.json, stage_k/eval.json): per video and
                  per dimension, over all videos (the same prompt and seed in both)
    block search  prune.json: the blocks removed, and every candidate's scores
    pairs         pairs.jsonl: the same prompts, seeds and properties, and their winner / loser scores
    training      train/metrics.jsonl and train/w_sft.json: every logged number of every step

    python bench/same_run.py runs/toy-redpo docs/shapes/runs/redpo-s0

The exit status is 0 when every difference is 0, 1 otherwise (2 when a folder is not a run).
"""
import argparse
import glob
import json
import math
import os
import sys


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()] if path.endswith(".jsonl") else json.load(f)


TIMES = ("latency", "seconds")   # measured times (prune.json's latency_s): no run repeats them


def numbers(obj, prefix=""):
    """Every number in a json value, by its path: {"a.b.0": 1.5, ...}; strings and booleans as
    themselves; measured times left out."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() if not key.startswith(TIMES)
                for k, v in numbers(val, f"{prefix}{key}.").items()}
    if isinstance(obj, list):
        return {k: v for i, val in enumerate(obj) for k, v in numbers(val, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): obj}


def largest_difference(a, b):
    """max |a - b| over the numbers two json values share (inf when their keys or texts differ)."""
    na, nb = numbers(a), numbers(b)
    if na.keys() != nb.keys():
        return math.inf
    worst = 0.0
    for key, x in na.items():
        y = nb[key]
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            if not (math.isnan(x) and math.isnan(y)):
                worst = max(worst, abs(x - y))
        elif x != y:
            return math.inf
    return worst


def eval_rows(a, b, rel):
    """Per dimension the reward measures: max |difference| over the videos of one eval json (the same
    videos in both); inf where one run measured a video the other did not. A dimension no video has
    (the pixel proxy's text alignment: null) is left out."""
    va, vb = read(os.path.join(a, rel))["per_video"], read(os.path.join(b, rel))["per_video"]
    if [(v["prompt"], v["seed"]) for v in va] != [(v["prompt"], v["seed"]) for v in vb]:
        return {"videos": math.inf}
    rows = {}
    for d in va[0]["scores"]:
        pairs = [(x["scores"][d], y["scores"][d]) for x, y in zip(va, vb)]
        if any((x is None) != (y is None) for x, y in pairs):
            rows[d] = math.inf
        elif any(x is not None for x, _ in pairs):
            rows[d] = max(abs(x - y) for x, y in pairs if x is not None)
    return rows


def compare(a, b):
    """[(file, what, max |difference|)] for every file of a run that both folders hold."""
    rows = []
    for path in sorted(glob.glob(os.path.join(a, "**", "*.json*"), recursive=True)):
        rel = os.path.relpath(path, a)
        other = os.path.join(b, rel)
        if not os.path.isfile(other) or rel in ("config.json", "timing.json") or rel.endswith("summary.json"):
            continue
        if os.path.basename(rel).startswith("eval") and "per_video" in read(path):
            rows += [(rel, d, diff) for d, diff in eval_rows(a, b, rel).items()]
        elif rel.endswith(("prune.json", "pairs.jsonl", "metrics.jsonl", "w_sft.json")):
            rows.append((rel, "every number", largest_difference(read(path), read(other))))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description="The largest difference between two runs' scores, pairs and "
                                            "training logs, file by file (0: the same run).")
    p.add_argument("a", help="a run folder (vip_loop.py --out)")
    p.add_argument("b", help="another run folder of the same settings")
    args = p.parse_args(argv)
    for folder in (args.a, args.b):
        if not os.path.isfile(os.path.join(folder, "full", "eval.json")):
            print(f"error: {folder} holds no full/eval.json; pass the folder of a vip_loop.py run", file=sys.stderr)
            return 2
    rows = compare(args.a, args.b)
    for rel, what, diff in rows:
        print(f"{rel:36s} {what:22s} {diff:.3g}")
    worst = max((d for _, _, d in rows), default=0.0)
    print(f"{len(rows)} comparisons over the files both hold; the largest difference: {worst:.3g}")
    return 0 if worst == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
