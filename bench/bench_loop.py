"""Benchmark: the default `python vip_loop.py` alone and beside a busy process.

    python bench/bench_loop.py                       # (a) alone, then (b) beside; ~15 min on 2 cores
    python bench/bench_loop.py --runs beside         # one of them
    python bench/bench_loop.py --runs beside --busy_threads 1   # beside a one-thread busy process
    python bench/bench_loop.py --root ../other-checkout --runs alone   # another version of the code

(a) runs the default loop (the toy world, 3 stages) as a user would, OMP_NUM_THREADS unset;
(b) the same while another CPU-bound torch process (big matmuls in a loop, torch's default
threads, spinning) runs beside it. It prints each wall time, the ratio (b) / (a) (2 is a fair
share of 2 cores beside a process that keeps both busy; far more is a collapse) and, per stage,
how often each eval-set video was generated (target: once per model state, prompt and seed;
latency measurements not counted). Other users'
jobs on the machine are not ours to stop: it prints the system load (1-minute) and what else was running.
"""
import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(os.path.dirname(HERE), "tests")   # test_reuse.count_generations: the tests' generation counter
sys.path.insert(0, HERE)
from bench_threads import busy_process  # noqa: E402  the CPU-bound process beside run (b)


def child(root, out, counts_path):
    """In the timed process: vip_loop.main() with every eval-set generation counted per stage."""
    sys.path[:0] = [root, TESTS]
    from infra import disk
    import vip_loop
    from test_reuse import count_generations
    stage = ["full"]

    def staged(run_stage):
        def run(r, k, *args, **kw):
            stage[0] = f"stage {k}"
            return run_stage(r, k, *args, **kw)
        return run

    counts = count_generations(setattr, label=lambda: (stage[0],))
    vip_loop.run_stage = staged(vip_loop.run_stage)
    vip_loop.main(["--out", out])
    full = disk.read_json(os.path.join(out, "full", "eval.json"))
    eval_items = {(v["prompt"], v["seed"]) for v in full["per_video"]}
    with open(counts_path, "w") as f:
        json.dump([[st, list(state), p, s, n] for (st, state, p, s), n in counts.items() if (p, s) in eval_items], f)


def others():
    """The other processes using a CPU now: 'pid %cpu command' lines."""
    ps = subprocess.run(["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    me = {str(os.getpid())}
    lines = [line.strip() for line in ps.splitlines()[1:] if line.split()[0] not in me]
    return [line[:150] for line in lines if float(line.split()[1]) >= 5.0]


def run(root, beside, work, busy_threads=None):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    name = "beside" if beside else "alone"
    out, counts = os.path.join(work, name), os.path.join(work, name + "-counts.json")
    busy_env = dict(env, OMP_NUM_THREADS=str(busy_threads)) if busy_threads else env
    with busy_process(busy_env) if beside else contextlib.nullcontext():
        load, seen = os.getloadavg()[0], others()
        start = time.perf_counter()
        with open(os.path.join(work, name + ".log"), "w") as log:
            subprocess.run([sys.executable, __file__, "--child", root, out, counts], cwd=root, env=env,
                           stdout=log, stderr=subprocess.STDOUT, check=True)
        wall, load_end = time.perf_counter() - start, os.getloadavg()[0]
    with open(counts) as f:
        rows = json.load(f)
    return wall, (load, load_end), seen, rows


def per_stage(rows):
    """stage -> (videos generated, distinct (state, prompt, seed), most generations of one)."""
    out = {}
    for stage, _, _, _, n in rows:
        videos, distinct, most = out.get(stage, (0, 0, 0))
        out[stage] = (videos + n, distinct + 1, max(most, n))
    return out


def main():
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", default=["alone", "beside"], choices=["alone", "beside"],
                   help="(a) alone, (b) beside a busy process, or both (default: alone beside)")
    p.add_argument("--root", default=os.path.dirname(HERE), help="the checkout whose vip_loop.py runs (default: this one)")
    p.add_argument("--busy_threads", type=int, default=None,
                   help="torch threads of the busy process beside (b) (default: torch's own, one per core)")
    p.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(*args.child)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))   # `finally` then stops the busy process
    root = os.path.abspath(args.root)
    work = args.work or tempfile.mkdtemp(prefix="bench_loop-")
    os.makedirs(work, exist_ok=True)
    print(f"python vip_loop.py from {root}; {len(os.sched_getaffinity(0))} cores; runs in {work}", flush=True)
    walls = {}
    for name in args.runs:
        wall, load, seen, rows = run(root, name == "beside", work, args.busy_threads)
        walls[name] = wall
        print(f"({'a' if name == 'alone' else 'b'}) {name}: {wall:.1f} s wall (system load {load[0]:.2f} at "
              f"the start, {load[1]:.2f} at the end)")
        for line in seen:
            print(f"    running at start: {line}")
        for stage, (videos, distinct, most) in per_stage(rows).items():
            print(f"    {stage}: {videos} eval-set videos generated, {distinct} distinct (model state, prompt, "
                  f"seed), at most {most} of one")
        sys.stdout.flush()
    if len(walls) == 2:
        print(f"(b) / (a) = {walls['beside'] / walls['alone']:.2f}")


if __name__ == "__main__":
    main()
