"""The paper's comparisons on the shapes world (Sec. 4: Tables 1, 3 and 4 in miniature), run and reported.

Four variants of `python vip_loop.py` (the toy preset: 3 stages, 18 held-out prompts x 4 seeds per row),
each with three training seeds (`--seed`: pair order, t and eps; the eval set does not change):

    redpo          V.I.P. with ReDPO (Table 1)            python vip_loop.py --seed S
    sft            the SFT baseline (Table 3)             python vip_loop.py --method sft --seed S
    dpo            ReDPO without its SFT term (Table 4)   python vip_loop.py --method dpo --seed S
    redpo-oneshot  all blocks at once, one round (Table 4, "w/o online")   python vip_loop.py --oneshot --seed S

    python toy/compare.py                         # all 12 runs, 2 at a time, then the report (hours on 2 cores)
    python toy/compare.py --variants redpo --seeds 0   # one run
    python toy/compare.py --report_only           # docs/shapes/report.md from docs/shapes/runs/ again

Runs go to runs/shapes/<variant>-s<seed>/ and are resumable: re-running the command skips finished
runs and resumes unfinished ones where they stopped. Every run starts from the same full model and
eval set, so the full model's row (full/) and the teacher's curation cache are made once and copied
into the other runs (the files vip_loop.py would write, byte for byte). Each finished run's eval jsons,
prune.json, metrics.jsonl and config.json (no weights) are copied to docs/shapes/runs/<run>/, and
docs/shapes/report.md is rewritten from all of them (report.py): Table 1 per variant with the spread
over seeds, paired differences, the methods side by side and the paper's claims with a verdict.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import runtime  # noqa: E402  before report (numpy): it sets how torch's CPU threads wait
import report  # noqa: E402

VARIANTS = {"redpo": [], "sft": ["--method", "sft"], "dpo": ["--method", "dpo"], "redpo-oneshot": ["--oneshot"]}
SHIPPED = ("config.json", "full/eval.json", "full/videos.npz")
STAGE_FILES = ("prune.json", "eval_pruned.json", "videos_pruned.npz", "eval.json", "videos.npz", "DONE",
               "train/metrics.jsonl", "pairs/summary.json")


def run_dir(runs, variant, seed):
    return os.path.join(runs, f"{variant}-s{seed}")


def finished(path):
    return os.path.isfile(os.path.join(path, "report.md"))


def seed_from(donor, path):
    """Copy the full model's row and the teacher cache of a finished run into a new run directory:
    the same model, eval set and sampler give the same files."""
    if os.path.isdir(path) or donor is None:
        return
    os.makedirs(path)
    shutil.copytree(os.path.join(donor, "full"), os.path.join(path, "full"))
    if os.path.isdir(os.path.join(donor, "teacher_cache")):
        shutil.copytree(os.path.join(donor, "teacher_cache"), os.path.join(path, "teacher_cache"))


def ship(path, docs):
    """The run's small files (no weights) to docs/<run>/, in the run directory layout."""
    dest = os.path.join(docs, os.path.basename(path))
    files = list(SHIPPED) + [os.path.join(d, f) for d in sorted(os.listdir(path)) if d.startswith("stage_")
                             for f in STAGE_FILES]
    for rel in files:
        if os.path.isfile(os.path.join(path, rel)):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            with runtime.atomic_file(os.path.join(dest, rel)) as tmp:
                shutil.copyfile(os.path.join(path, rel), tmp)


def write(docs, out):
    dirs = sorted(os.path.join(docs, d) for d in os.listdir(docs)) if os.path.isdir(docs) else []
    if dirs:
        report.write_report(dirs, os.path.join(out, "report.md"))
        print(f"wrote {os.path.join(out, 'report.md')} from {len(dirs)} runs")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   help=f"which variants to run (default: all, {' '.join(VARIANTS)})")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                   help="training seeds, vip_loop.py's --seed; the eval set is the same for all (default: 0 1 2)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time, one CPU thread each (default: 2)")
    p.add_argument("--runs", default=os.path.join("runs", "shapes"),
                   help="where the run directories go (default: runs/shapes)")
    p.add_argument("--docs", default=os.path.join(ROOT, "docs", "shapes"),
                   help="where report.md and the shipped runs/ go (default: docs/shapes)")
    p.add_argument("--report_only", action="store_true",
                   help="only rewrite report.md from the shipped runs (default: off, run what is missing first)")
    args = p.parse_args(argv)
    shipped = os.path.join(args.docs, "runs")
    if args.report_only:
        return write(shipped, args.docs)
    todo = [(v, s) for s in args.seeds for v in args.variants]
    first = run_dir(args.runs, *todo[0])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    running, start = [], time.time()
    while todo or running:
        for proc, path in list(running):
            if proc.poll() is not None:
                running.remove((proc, path))
                print(f"{path}: exit {proc.returncode} after {(time.time() - start) / 60:.1f} min", flush=True)
                if proc.returncode == 0:
                    ship(path, shipped)
                    write(shipped, args.docs)
        donor = first if finished(first) or os.path.isfile(os.path.join(first, "stage_1", "DONE")) else None
        while todo and len(running) < args.jobs and (donor or not running):
            variant, seed = todo.pop(0)
            path = run_dir(args.runs, variant, seed)
            if finished(path):
                ship(path, shipped)
                continue
            if path != first:
                seed_from(donor, path)
            cmd = [sys.executable, os.path.join(ROOT, "vip_loop.py"), *VARIANTS[variant], "--seed", str(seed), "--out", path]
            print(" ".join(cmd[1:]), flush=True)
            os.makedirs(args.runs, exist_ok=True)
            log = open(path + ".log", "a")
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), path))
        time.sleep(5)
    write(shipped, args.docs)


if __name__ == "__main__":
    main()
