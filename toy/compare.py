"""The paper's comparisons on the shapes world (Sec. 4: Tables 1, 3, 4 and the supplement's w_sft
analysis, in miniature), run resumably; the settings and the analysis are fixed in docs/shapes/PLAN.md.

Every run is `python vip_loop.py` on the toy preset (3 stages cutting 2, 2, 1 motion modules; the
block search and the targets on toy/search_prompts.txt, training prompts; w_sft by the paper's rule,
"auto"; 18 held-out prompts x 4 eval seeds per row), with a training seed `--seed S` (pair order, t, eps):

    main (docs/shapes/runs/<name>-s<S>/)
      redpo                   V.I.P. with ReDPO (Table 1)                 --seed S
      sft                     the SFT baseline (Table 3)                  --method sft
      dpo                     ReDPO without its SFT term (Table 4)        --method dpo
      redpo-oneshot           all 5 modules at once, one round (Table 4)  --oneshot
      redpo-oneshot-budget    the same at the plan's equal budget         --oneshot --epochs 6
    sweep, stage 1 only (docs/shapes/sweep/runs/s1-<name>-s<S>/; --stages 1 --blocks 2)
      auto, sft, dpo (w_sft 0), w1e2, w3e2, w1e3, w3e3, w1e4, w1e5      --w_sft auto | --method ... | --w_sft X
      auto-e4, auto-e8, sft-e4, sft-e8     the training budget at 2x and 4x the steps (--epochs 4 / 8)

    python toy/compare.py                          # everything, 2 runs at a time (77 min on 2 cores)
    python toy/compare.py --list                   # the queue, in order, with what is done
    python toy/compare.py --only s1-auto s1-sft --seeds 0 1    # a part of it
    python toy/compare.py --report_only            # report.md and the w_sft figure from the shipped runs

Queue order: the stage-1 sweep at every seed, then ReDPO and SFT, the budget check, then DPO alone
and one-shot. Runs go to runs/shapes/ and are resumable: re-running the command skips finished runs
and resumes the others where they stopped. What is the same for every run is made once and copied
(the files vip_loop.py would write, byte for byte): the full model's rows and the teacher's curation
cache; for every online run stage 1's block search, pruned row and pairs (none depends on the
training seed or the loss); for the full ReDPO, SFT and DPO runs their whole stage 1, which is the
sweep's auto, sft and dpo run of the same seed. The second run of the queue makes all of it again
on its own, and shared_check.json says whether its files equal the copied ones. Each finished run's
small files (eval jsons, prune.json, metrics.jsonl, w_sft.json; no weights) go to docs/shapes/.
Nothing here commits.
"""
import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from infra import cli, disk
from analysis import report  # noqa: E402
from toy import w_sft_sweep  # noqa: E402

ONE_STAGE = ["--stages", "1", "--blocks", "2"]
SWEEP = {"auto": ["--w_sft", "auto"], "sft": ["--method", "sft"], "dpo": ["--method", "dpo"],
         **{f"w{w}": ["--w_sft", w] for w in ("1e2", "3e2", "1e3", "3e3", "1e4", "1e5")}}
BUDGET = {f"{v}-e{e}": SWEEP[v] + ["--epochs", str(e)] for v in ("auto", "sft") for e in (4, 8)}
# One-shot trains one round on its pairs. The plan's equal budget: 6 epochs x 18 steps (72 pairs,
# batch 4) = 108, the online run's 3 stages x 2 epochs x 18 steps when every stage curates 72 pairs;
# with the search's own seeds stage 1 curates 23, and the online run trains 84 (PLAN.md, last section).
MAIN = {"redpo": [], "sft": ["--method", "sft"], "dpo": ["--method", "dpo"], "redpo-oneshot": ["--oneshot"],
        "redpo-oneshot-budget": ["--oneshot", "--epochs", "6"]}
# Stage 1 of a full run is the sweep run of the same loss and seed.
STAGE_1_FROM = {"redpo": "s1-auto", "sft": "s1-sft", "dpo": "s1-dpo"}

CHECK_NOTE = ("pairs/config.json echoes the flags of the run that curated the pairs (its method, seed and "
              "--out), so the copies carry the donor's; every other file holds the same content")
FULL = ("full",)
CACHE = ("teacher_cache",)
PRUNED = tuple(os.path.join("stage_1", f) for f in ("prune.json", "pruned", "eval_pruned.json", "videos_pruned.npz", "pairs"))
SHIPPED = ("config.json", "full/eval.json", "full/videos.npz", "full/eval_search.json", "timing.json")
STAGE_FILES = ("prune.json", "eval_pruned.json", "videos_pruned.npz", "eval.json", "videos.npz", "DONE",
               "train/metrics.jsonl", "train/w_sft.json", "pairs/summary.json")


def plan(seeds):
    """The queue, most important first: [{"name", "group" (main | sweep), "argv", "copy": [(source
    run name, relative paths)], "after": the run names whose copied files must exist first}]."""
    def sweep(v, s, argv):
        return {"name": f"s1-{v}-s{s}", "group": "sweep", "argv": ONE_STAGE + argv + ["--seed", str(s)]}

    donor, check = f"s1-auto-s{seeds[0]}", f"s1-sft-s{seeds[1 % len(seeds)]}"
    jobs = [sweep(v, s, argv) for s in seeds for v, argv in SWEEP.items()]
    jobs.sort(key=lambda j: (j["name"] != donor, j["name"] != check))        # the donor and the check first
    for j in jobs:
        j["copy"] = [] if j["name"] in (donor, check) else [(donor, FULL + CACHE + PRUNED)]
    main = lambda v, s: {"name": f"{v}-s{s}", "group": "main", "argv": MAIN[v] + ["--seed", str(s)],   # noqa: E731
                         "copy": [(f"{STAGE_1_FROM[v]}-s{s}", FULL + CACHE + ("stage_1",))] if v in STAGE_1_FROM else []}
    jobs += [main(v, s) for s in seeds for v in ("redpo", "sft")]
    jobs += [dict(sweep(v, s, argv), copy=[(donor, FULL + CACHE + PRUNED)]) for s in seeds for v, argv in BUDGET.items()]
    jobs += [main("dpo", s) for s in seeds]
    oneshot = f"redpo-oneshot-s{seeds[0]}"
    for s in seeds:
        for v in ("redpo-oneshot", "redpo-oneshot-budget"):
            j = main(v, s)
            j["copy"] = [(donor, FULL + CACHE)] if j["name"] == oneshot else [(oneshot, FULL + CACHE + PRUNED)]
            jobs.append(j)
    for j in jobs:
        j["after"] = sorted({src for src, _ in j["copy"]})
    return jobs


def run_path(runs, job_or_name, jobs=None):
    name = job_or_name if isinstance(job_or_name, str) else job_or_name["name"]
    group = job_or_name["group"] if not isinstance(job_or_name, str) else next(j["group"] for j in jobs if j["name"] == name)
    return os.path.join(runs, "sweep", name) if group == "sweep" else os.path.join(runs, name)


def finished(path):
    return os.path.isfile(os.path.join(path, "report.md"))


def busy(path):
    """Another process (an earlier compare.py's child) is writing this run: vip_loop's lock is held."""
    import fcntl
    lock = os.path.join(path, ".lock")
    if not os.path.isfile(lock):
        return False
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def ready(path, rels):
    """The files to copy from the run at `path` are there: its shared stage-1 files once its pairs are
    written (the teacher cache is complete then), a whole stage once DONE, the full rows once made."""
    if any(r.startswith("stage_1") for r in rels):
        need = "stage_1/DONE" if "stage_1" in rels else "stage_1/pairs/pairs.jsonl"
    else:
        need = "stage_1/pairs/pairs.jsonl" if "teacher_cache" in rels else "full/eval_search.json"
    return os.path.exists(os.path.join(path, need))


def seed_from(src, dest, rels):
    """Copy `rels` of the run `src` into a new run directory `dest` (nothing when dest exists)."""
    if os.path.isdir(dest):
        return
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel in rels:
        s, d = os.path.join(src, rel), os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        (shutil.copytree if os.path.isdir(s) else shutil.copyfile)(s, d)
    os.rename(tmp, dest)


def same_content(pa, pb):
    """Two files hold the same thing: the same bytes; or, for an eval json or prune.json, the same but
    for the timings; or, for a torch file, the same tensors and values (torch.save's zip records the
    name of the temporary file it was written to, so equal caches differ in a few bytes)."""
    if filecmp.cmp(pa, pb, shallow=False):
        return True
    if pa.endswith(".json"):
        ja, jb = disk.read_json(pa), disk.read_json(pb)
        for j in (ja, jb):
            if isinstance(j, dict):
                for timing in ("latency", "latency_s"):
                    j.pop(timing, None)
        return ja == jb
    if pa.endswith(".pt"):
        import torch

        def equal(x, y):
            if isinstance(x, torch.Tensor):
                return isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)
            if isinstance(x, dict):
                return isinstance(y, dict) and x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)
            return x == y
        return equal(disk.load_torch(pa, weights_only=False), disk.load_torch(pb, weights_only=False))
    return False


def same_files(a, b, rels):
    """{rel: {"same bytes": n, "same content": [files equal but for timings or torch's zip names],
    "differ": [files]}} for the shared files of two runs made apart (same_content)."""
    out = {}
    for rel in rels:
        pa, pb = os.path.join(a, rel), os.path.join(b, rel)
        files = ([os.path.relpath(os.path.join(r, f), pa) for r, _, fs in os.walk(pa) for f in fs]
                 if os.path.isdir(pa) else [""])
        other = set(os.path.relpath(os.path.join(r, f), pb) for r, _, fs in os.walk(pb) for f in fs) if os.path.isdir(pb) else {""}
        res = {"same bytes": 0, "same content": [], "differ": sorted(other - set(files))}
        for f in sorted(files):
            fa, fb = os.path.join(pa, f) if f else pa, os.path.join(pb, f) if f else pb
            if f not in other:
                res["differ"].append(f)
            elif filecmp.cmp(fa, fb, shallow=False):
                res["same bytes"] += 1
            else:
                res["same content" if same_content(fa, fb) else "differ"].append(f or os.path.basename(rel))
        out[rel] = res
    return out


def ship(path, dest, wall_s=None):
    """The run's small files (no weights) to `dest`, in the run directory layout, and its times."""
    files = list(SHIPPED) + [os.path.join(d, f) for d in sorted(os.listdir(path)) if d.startswith("stage_")
                             for f in STAGE_FILES]
    log, timing = path + ".log", os.path.join(path, "timing.json")
    if wall_s is not None or not os.path.isfile(timing):
        lines = [ln.strip() for ln in open(log, errors="replace")] if os.path.isfile(log) else []
        disk.write_json(timing, {"wall_s_last_process": None if wall_s is None else round(wall_s, 1),
                                    "printed": [ln for ln in lines if ln.startswith("time:")]})
    for rel in files:
        if os.path.isfile(os.path.join(path, rel)):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            with disk.atomic_file(os.path.join(dest, rel)) as tmp:
                shutil.copyfile(os.path.join(path, rel), tmp)


def run_queue(todo, jobs, runs, dest, n_jobs, after_run=None, every_pass=None):
    """Run the jobs of `todo` (plan()'s dicts; `jobs`: the whole queue, for the runs they copy from),
    `n_jobs` vip_loop.py processes at a time, one CPU thread each, in queue order as their sources
    are ready (a job's "script", default vip_loop.py, gets its argv and --out). A finished run is skipped and shipped to dest(job); a run another process is writing
    is left to it (and counts towards n_jobs); an unfinished one resumes where it stopped. After each
    finished run: after_run(); every pass of the loop: every_pass()."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    running, start = [], time.time()
    while todo or running:
        for proc, job, t0 in list(running):
            if proc.poll() is None:
                continue
            running.remove((proc, job, t0))
            path = run_path(runs, job)
            print(f"{job['name']}: exit {proc.returncode} after {(time.time() - t0) / 60:.1f} min "
                  f"({(time.time() - start) / 60:.0f} min since start)", flush=True)
            if proc.returncode == 0:
                ship(path, dest(job), time.time() - t0)
                if after_run:
                    after_run()
        if every_pass:
            every_pass()
        elsewhere = sum(busy(run_path(runs, j)) for j in todo)    # children of an earlier process
        for job in list(todo):
            if len(running) + elsewhere >= n_jobs:
                break
            path = run_path(runs, job)
            if finished(path):
                todo.remove(job)
                ship(path, dest(job))
                continue
            if busy(path):
                continue    # left to the process writing it; shipped once finished
            sources = [(run_path(runs, src, jobs), rels) for src, rels in job["copy"]]
            if not os.path.isdir(path) and not all(ready(s, rels) for s, rels in sources):
                continue    # waits for the run it copies from
            todo.remove(job)
            for s, rels in sources:
                seed_from(s, path, rels)
            cmd = [sys.executable, job.get("script", os.path.join(ROOT, "vip_loop.py")), *job["argv"], "--out", path]
            print(" ".join(cmd[1:]), flush=True)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            log = open(path + ".log", "a")
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), job, time.time()))
        if todo or running:
            time.sleep(5)


def write_reports(docs):
    """docs/shapes/report.md from the main runs, the w_sft figure and table from the sweep runs."""
    main_runs = os.path.join(docs, "runs")
    dirs = sorted(os.path.join(main_runs, d) for d in os.listdir(main_runs)) if os.path.isdir(main_runs) else []
    if dirs:
        report.write_report(dirs, os.path.join(docs, "report.md"))
        print(f"wrote {os.path.join(docs, 'report.md')} from {len(dirs)} runs", flush=True)
    if os.path.isdir(os.path.join(docs, "sweep", "runs")):
        w_sft_sweep.write(os.path.join(docs, "sweep", "runs"), os.path.join(docs, "sweep"))


def add_queue_flags(p, runs, docs, what):
    """The flags of a run queue (this file's, toy/capacity.py's, toy/confirm.py's): --jobs, --runs
    (runs/RUNS), --docs (docs/DOCS: where `what` goes) and --list."""
    p.add_argument("--jobs", type=int, default=2, help="runs at a time, one CPU thread each (default: 2)")
    p.add_argument("--runs", default=os.path.join("runs", runs), help=f"run directories (default: runs/{runs})")
    p.add_argument("--docs", default=os.path.join(ROOT, "docs", docs),
                   help=f"where {what} go (default: docs/{docs})")
    p.add_argument("--list", action="store_true", help="print the queue and what is done, run nothing (default: off)")


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="training seeds (default: 0 1 2 3 4)")
    p.add_argument("--only", nargs="+", default=None,
                   help="run names without the seed (s1-auto, redpo, ...; default: the whole queue)")
    add_queue_flags(p, "shapes", "shapes", "the shipped files, report.md and the figure")
    p.add_argument("--report_only", action="store_true",
                   help="only write the reports from the shipped runs (default: off, run what is missing first)")
    args = p.parse_args(argv)
    jobs = plan(args.seeds)
    dest = lambda j: os.path.join(args.docs, "runs" if j["group"] == "main" else os.path.join("sweep", "runs"), j["name"])  # noqa: E731
    if args.report_only:
        return write_reports(args.docs)
    todo = [j for j in jobs if args.only is None or j["name"].rsplit("-s", 1)[0] in args.only]
    if args.list:
        for j in todo:
            state = "done" if finished(run_path(args.runs, j)) else "started" if os.path.isdir(run_path(args.runs, j)) else "queued"
            print(f"{j['name']:32s} {state:8s} vip_loop.py {' '.join(j['argv'])}" + (f"   (copies from {', '.join(j['after'])})" if j["after"] else ""))
        return
    donor, check = (run_path(args.runs, j) for j in jobs[:2])
    check_file = os.path.join(args.docs, "sweep", "shared_check.json")

    def shared_check():
        if not os.path.isfile(check_file) and all(os.path.isfile(os.path.join(d, "stage_1", "DONE")) for d in (donor, check)):
            disk.write_json(check_file, {"made_apart": [os.path.basename(donor), os.path.basename(check)],
                                            "files": same_files(donor, check, FULL + CACHE + PRUNED),
                                            "note": CHECK_NOTE})
            print(f"wrote {check_file}", flush=True)

    run_queue(todo, jobs, args.runs, dest, args.jobs, lambda: write_reports(args.docs), shared_check)
    write_reports(args.docs)


if __name__ == "__main__":
    cli.run_cli(main)
