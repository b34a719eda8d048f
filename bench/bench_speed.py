"""Benchmark (not a test): toy-generation clips per second and the default run's wall time, an
older commit of this code against this checkout, side by side in one invocation.

    python bench/bench_speed.py                             # 757418c vs this checkout: 5 pairs of clips/s, 3 of runs
    python bench/bench_speed.py --old HEAD~1 --run_pairs 0  # clips per second only (~5 min on 2 cores)
    python bench/bench_speed.py --json bench_speed.json     # the figures, also as JSON
    python bench/bench_speed.py --beside --run_pairs 1      # the same beside a CPU-bound torch process
    python bench/bench_speed.py --profile 15                # where this tree's generation spends its time
    python bench/bench_speed.py --old HEAD~3 --pairs 0 --run_pairs 0 --suite_pairs 2   # the test suite (~15 min)

Clips per second: evaluate.evaluate_model of the toy teacher on --clips eval-set videos (the
default run's settings: 10 DDIM steps, 8 clips a generate call, the shapes reward), after a
warm-up batch, in a fresh process. The default run: `python vip_loop.py` into a temporary folder,
as a user would (OMP_NUM_THREADS unset). The test suite: `python -m pytest -q tests -p
no:cacheprovider` in each tree, both with this checkout's VBench environment when it has one
(VBENCH_VENV), as CI runs it. The old code is a `git worktree` of --old in a temporary
folder (removed at the end); both run with the interpreter running this script. Old and new are
timed alternately, old first in odd pairs and new first in even ones, so that a change in the
machine's load falls on both; the table shows medians, the ratio new / old, and CPU seconds (user +
system, which another user's jobs change less than wall time). Other users' jobs are not ours to
stop: it prints the system load (1-minute) before and after.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run in the tree under test (argv[1]): clips per second of its own generation path.
CLIPS = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
try:                          # the machinery's package sets how torch's CPU threads wait
    from infra.prompt_files import read_prompts
except ImportError:           # a tree from before infra/: runtime.py and prompt_files.py at the top
    import runtime  # noqa: F401
    from prompt_files import read_prompts
import inspect
import evaluate
import models
from rewards import load_reward
n = int(sys.argv[2])
items = read_prompts(sys.argv[3])
videos = [(items[i % len(items)]["prompt"], 1000 * (i // len(items)) + i % len(items)) for i in range(n)]
prompts, seeds = [p for p, _ in videos], [s for _, s in videos]
model, reward = models.load("toy"), load_reward("shapes")
def run(p, s):                # older trees take prompts and seeds apart, and measure the cost unless told not to
    params = inspect.signature(evaluate.evaluate_model).parameters
    videos = ((p, s, None),) if "videos" in params else (p, s)
    evaluate.evaluate_model(model, reward, *videos, batch_size=8, steps=10, **({"measure": False} if "measure" in params else {}))
run(prompts[:8], seeds[:8])   # warm-up
usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
run(prompts, seeds)
seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
print(json.dumps({"clips": n, "seconds": seconds, "cpu": cpu}))
"""


# Run in this tree: where one generate call's time goes, per op (torch.profiler, one thread: what
# each of infra/parallel.py's workers runs).
PROFILE = """
import sys
sys.path.insert(0, sys.argv[1])
import infra  # noqa: F401  sets how torch's CPU threads wait (infra/__init__.py)
import torch
from torch.profiler import ProfilerActivity, profile
import models
torch.set_num_threads(1)
model = models.load("toy")
prompts = ["a red circle moving left", "a blue square moving up", "a green triangle staying still",
           "a cyan circle moving right"] * 2
model.generate(prompts, list(range(8)), steps=10)                         # warm-up
with profile(activities=[ProfilerActivity.CPU]) as prof:
    model.generate(prompts, list(range(8)), steps=10)
ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
total = sum(e.self_cpu_time_total for e in ops)
print(f"one generate call, 8 clips x 10 DDIM steps, 1 thread: {total / 1e6:.2f} s of op time")
for e in ops[:int(sys.argv[2])]:
    print(f"  {e.key:50s} {100 * e.self_cpu_time_total / total:5.1f}%  {e.count:6d} calls")
"""


# --beside: a CPU-bound torch process for the whole benchmark (big matmuls in a loop, torch's default
# threads, OpenMP's default spinning wait), as tests/bench_threads.py's and bench_loop.py's (b).
BUSY = "import torch\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a\n"


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_clips(tree, clips):
    """Clips per second and CPU seconds per clip of `tree`'s toy generation (a fresh process)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    r = subprocess.run([sys.executable, "-c", CLIPS, tree, str(clips), os.path.join(tree, "toy", "eval_prompts.txt")],
                       cwd=tree, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: the clip benchmark failed in {tree}:\n{r.stderr[-2000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return {"clips_per_s": out["clips"] / out["seconds"], "cpu_s_per_clip": out["cpu"] / out["clips"]}


def time_run(tree, out):
    """Wall and CPU seconds of `python vip_loop.py --out out` in `tree`, and its own time line."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    cpu, start = children_cpu(), time.perf_counter()
    r = subprocess.run([sys.executable, "vip_loop.py", "--out", out], cwd=tree, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu
    if r.returncode != 0:
        sys.exit(f"error: the default run failed in {tree}:\n{r.stderr[-2000:]}")
    line = next((s for s in r.stdout.splitlines() if s.startswith("time: ")), "")
    shutil.rmtree(out, ignore_errors=True)
    return {"wall_s": wall, "cpu_s": cpu, "time_line": line}


def time_suite(tree):
    """Wall and CPU seconds of `python -m pytest -q tests -p no:cacheprovider` in `tree`, and pytest's
    last line (its own time)."""
    env = dict(os.environ)
    if os.path.isdir(os.path.join(ROOT, ".venv-vbench")):     # a worktree has none: both run the VBench tests
        env.setdefault("VBENCH_VENV", os.path.join(ROOT, ".venv-vbench"))
    cpu, start = children_cpu(), time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests", "-p", "no:cacheprovider"], cwd=tree, env=env,
                       capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu
    last = (r.stdout.strip().splitlines() or [""])[-1]
    if r.returncode != 0:
        sys.exit(f"error: the test suite failed in {tree}: {last}")
    return {"wall_s": wall, "cpu_s": cpu, "summary": last}


def alternate(pairs, measure):
    """measure("old") and measure("new") `pairs` times, old first in odd pairs: {side: [results]}."""
    results = {"old": [], "new": []}
    for i in range(pairs):
        for side in (("old", "new") if i % 2 == 0 else ("new", "old")):
            results[side].append(measure(side))
            print(f"  pair {i + 1} {side}: " + ", ".join(f"{k} {v:.4g}" for k, v in results[side][-1].items()
                                                        if isinstance(v, float)), flush=True)
    return results


def medians(results, key):
    return {side: statistics.median(r[key] for r in rs) for side, rs in results.items()}


def table(rows, old_name):
    """rows: (label, {old, new} medians, format). The printed table."""
    lines = [f"{'median of pairs':28s} {'old ' + old_name:>16s} {'new (this tree)':>16s} {'new / old':>10s}"]
    for label, m, fmt in rows:
        lines.append(f"{label:28s} {format(m['old'], fmt):>16s} {format(m['new'], fmt):>16s} {m['new'] / m['old']:>10.2f}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Clips per second, the default run's and the test suite's wall "
                                            "time: an older commit against this checkout, timed alternately.",
                                allow_abbrev=False)
    p.add_argument("--old", default="757418c", help="the commit to compare with (default: 757418c)")
    p.add_argument("--pairs", type=int, default=5, help="old/new pairs of the clip benchmark (default: 5)")
    p.add_argument("--clips", type=int, default=32, help="clips per clip benchmark (default: 32)")
    p.add_argument("--run_pairs", "--run-pairs", type=int, default=3,
                   help="old/new pairs of the default run, `python vip_loop.py` (default: 3; 0: none)")
    p.add_argument("--suite_pairs", type=int, default=0,
                   help="old/new pairs of the test suite, `python -m pytest -q tests`, ~3.5 min each (default: 0, none)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file (default: none)")
    p.add_argument("--beside", action="store_true",
                   help="time everything beside a CPU-bound torch process (default: alone)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="only print the N ops of this tree's generation that take the most time, and exit (default: 0)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.profile:
        sys.exit(subprocess.run([sys.executable, "-c", PROFILE, ROOT, str(args.profile)], cwd=ROOT).returncode)
    if min(args.pairs, args.run_pairs, args.suite_pairs) < 0 or args.clips < 8:
        sys.exit("error: --pairs, --run_pairs and --suite_pairs must be at least 0, --clips at least 8")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))   # the cleanup below still runs
    scratch = tempfile.mkdtemp(prefix="bench_speed_")
    old = os.path.join(scratch, "old")
    r = subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", old, args.old], capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(scratch)
        sys.exit(f"error: cannot check out --old {args.old}: {r.stderr.strip()}")
    trees = {"old": old, "new": ROOT}
    busy = None
    if args.beside:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
        busy = subprocess.Popen([sys.executable, "-c", BUSY], env=env)
    try:
        commit = subprocess.run(["git", "-C", old, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        print(f"{os.cpu_count()} cores; system load {os.getloadavg()[0]:.2f}; old = {commit}, new = {ROOT}"
              + ("; beside a CPU-bound torch process" if busy else ""), flush=True)
        figures = {"cores": os.cpu_count(), "old": commit, "clips": args.clips, "beside": bool(busy)}
        rows = []
        if args.pairs:
            print(f"clips per second ({args.clips} toy clips, 10 DDIM steps, 8 a call):", flush=True)
            clips = alternate(args.pairs, lambda side: time_clips(trees[side], args.clips))
            rows += [("clips per second", medians(clips, "clips_per_s"), ".3f"),
                     ("CPU s per clip", medians(clips, "cpu_s_per_clip"), ".3f")]
            figures["clip_pairs"] = clips
        if args.run_pairs:
            print("the default run (python vip_loop.py):", flush=True)
            runs = alternate(args.run_pairs, lambda side: time_run(trees[side], os.path.join(scratch, f"run-{side}")))
            rows += [("default run, wall s", medians(runs, "wall_s"), ".1f"),
                     ("default run, CPU s", medians(runs, "cpu_s"), ".1f")]
            for side in ("old", "new"):
                print(f"  {side}, its last time line: {runs[side][-1]['time_line']}")
            figures["run_pairs"] = runs
        if args.suite_pairs:
            print("the test suite (python -m pytest -q tests):", flush=True)
            suites = alternate(args.suite_pairs, lambda side: time_suite(trees[side]))
            rows += [("test suite, wall s", medians(suites, "wall_s"), ".1f"),
                     ("test suite, CPU s", medians(suites, "cpu_s"), ".1f")]
            for side in ("old", "new"):
                print(f"  {side}, pytest's last line: {suites[side][-1]['summary']}")
            figures["suite_pairs"] = suites
        print(f"system load after: {os.getloadavg()[0]:.2f}")
        print(table(rows, commit))
        figures["medians"] = {label: m for label, m, _ in rows}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=2)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", old], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
