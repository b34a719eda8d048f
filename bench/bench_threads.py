"""Benchmark: does a CPU run gain from torch's threads, alone and beside a busy process?

    python bench/bench_threads.py                                 # every config, ~50 min on 2 cores
    python bench/bench_threads.py --configs toy medium-step --repeats 5

For each config, one unit of work (a generation, or a ReDPO step) is timed in a fresh process with
1 thread, with torch's default (one per core) waiting asleep (OMP_WAIT_POLICY=PASSIVE, what the
scripts set: infra/__init__.py) and with the default threads spinning (ACTIVE, OpenMP's own default), (a)
with nothing of ours beside it and (b) beside another CPU-bound torch process (big matmuls in a
loop, default threads, spinning). It prints the median seconds of each and the ratios to 1 thread.
A process that runs past --limit seconds (load, warm-up and the timed units) is stopped; its cell
shows '>LIMIT' and is not run again (spinning threads beside a busy process can take 100x longer).
Other users' jobs on the machine are not ours to stop: the script prints the system load (1-minute) it
started under.
"""
import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.dirname(os.path.abspath(__file__))]

# name: what one unit of work is
CONFIGS = {
    "toy": "models.load('toy').generate of 4 clips (20 DDIM steps, 8 x 16^2)",
    "tiny": "models.load('tiny').generate of 2 videos (4 steps, CFG, 8 x 32^2)",
    "tiny-videocrafter2": "models.load('tiny-videocrafter2').generate of 2 videos (4 steps, CFG, 8 x 32^2)",
    "medium-step": "one ReDPO step (batch_loss + backward) of bench_redpo's medium config, 2 pairs x 16 x 16^2",
    "medium-forward": "one no-grad denoiser forward of bench_redpo's medium config on 4 x 16 x 16^2 (a CFG step)",
    "mid-forward": "medium-forward with channels (48, 96, 192), 8 heads, 16 groups",
    "small-forward": "medium-forward with channels (32, 64, 128), 4 heads, 16 groups",
}
WIDTHS = {"mid-forward": ((48, 96, 192), 8, 16), "small-forward": ((32, 64, 128), 4, 16)}
COMPETITOR = "import torch\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a\n"


def work(name):
    """A zero-argument function doing one unit of `name`'s work, and its model's parameter count."""
    import torch
    import models
    if name in ("toy", "tiny", "tiny-videocrafter2"):
        model = models.load(name)
        n = 4 if name == "toy" else 2
        prompts = ["a red circle moving left", "a blue square staying still", "a cyan triangle moving up",
                   "a green circle moving down"][:n]
        return (lambda: model.generate(prompts, list(range(n)))), model.num_parameters()["total"]
    import bench_redpo
    from models import animatediff
    import defaults
    import redpo
    from diffusers import DDIMScheduler
    unet_cfg, adapter_cfg, frames, size, B = bench_redpo.CONFIGS["medium"]
    if name in WIDTHS:
        channels, heads, groups = WIDTHS[name]
        unet_cfg = dict(unet_cfg, block_out_channels=channels, norm_num_groups=groups)
        adapter_cfg = dict(adapter_cfg, block_out_channels=channels, motion_num_attention_heads=heads,
                           motion_norm_num_groups=groups)
    torch.manual_seed(0)
    student = animatediff.build_animatediff_unet(unet_cfg, adapter_cfg)
    teacher = animatediff.build_animatediff_unet(unet_cfg, adapter_cfg).requires_grad_(False)
    for n, p in student.named_parameters():
        p.requires_grad_(animatediff.is_motion_param(n))
    sched = DDIMScheduler(**animatediff.ANIMATEDIFF_SCHEDULER)
    embeds = torch.randn(2 * B, 77, unet_cfg["cross_attention_dim"])
    S, T = bench_redpo.Bare(student, embeds, sched), bench_redpo.Bare(teacher, embeds, sched)
    shape = (B, 4, frames, size, size)
    params = sum(p.numel() for p in student.parameters())
    if name.endswith("-forward"):
        x_t, t = torch.randn((2 * B,) + shape[1:]), torch.full((2 * B,), 500)

        def forward():
            with torch.no_grad():
                T.noise_pred(x_t, t, embeds)
        return forward, params
    batch = {"x_w": torch.randn(shape), "x_l": torch.randn(shape), "eps": torch.randn(shape),
             "t": torch.randint(0, 1000, (B,)), "prompts": ["p"] * B}

    def step():
        loss, _ = redpo.batch_loss(S.noise_pred, T, batch, "redpo", defaults.PAPER["beta"], defaults.PAPER["w_sft"])
        loss.backward()
    return step, params


def child(name, threads, repeats):
    """In a fresh process: warm up, time `repeats` units, print 'params median'."""
    import torch
    torch.set_num_threads(threads)
    fn, params = work(name)
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    print(params, statistics.median(times))


@contextlib.contextmanager
def busy_process(env):
    """Another CPU-bound torch process for the length of the block: big matmuls in a loop, torch's
    default threads, spinning (OpenMP's default wait; bench_loop.py uses it too)."""
    other = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=dict(env, OMP_WAIT_POLICY="ACTIVE"))
    try:
        time.sleep(1.0)  # let it start its threads
        yield
    finally:
        other.kill()
        other.wait()


def measure(name, threads, wait, repeats, beside, limit):
    """(params, median seconds of a unit) in a fresh process, or (None, None) past `limit` seconds."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    try:
        with busy_process(env) if beside else contextlib.nullcontext():
            out = subprocess.run([sys.executable, __file__, "--child", name, str(threads), str(repeats)],
                                 env=dict(env, OMP_WAIT_POLICY=wait), timeout=limit,
                                 cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except subprocess.TimeoutExpired:
        return None, None
    return int(out[-2]), float(out[-1])


def cell_text(one, times, limit):
    """'median s (median ratio to 1 thread)', or '>LIMIT' for a cell stopped at the limit."""
    if None in times:
        return f"{'>%.0fs' % limit:>7s}" + ("" if times is one else " " * 7)
    text = f"{statistics.median(times):6.2f}s"
    if times is not one:
        ratio = "  - " if None in one else f"{statistics.median(b / a for a, b in zip(one, times)):4.2f}"
        text += f" ({ratio})"
    return text


def main():
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--repeats", type=int, default=3, help="units timed per process (their median)")
    p.add_argument("--rounds", type=int, default=3, help="processes per cell, 1 thread and N taking turns")
    p.add_argument("--limit", type=float, default=120.0,
                   help="seconds a process may take before its cell is shown as '>LIMIT' and skipped")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        name, threads, repeats = args.child
        return child(name, int(threads), int(repeats))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))   # `finally` then stops the busy process
    cores = len(os.sched_getaffinity(0))
    cells = [(1, "PASSIVE"), (cores, "PASSIVE"), (cores, "ACTIVE")]   # (threads, OMP_WAIT_POLICY)
    print(f"{cores} cores; system load at start {os.getloadavg()[0]:.2f}; each cell: the median over "
          f"{args.rounds} processes of their median of {args.repeats} units; (x): the cell / 1 thread, the "
          f"median of the {args.rounds} rounds (the three cells take turns)")
    head = f"1 thr  {cores} passive  {cores} active"
    print(f"{'config':20s} {'params':>8s} | alone: {head:>32s} | beside: {head:>32s}")
    for name in args.configs:
        row, params = [], 0
        for beside in (False, True):
            t = {c: [] for c in cells}
            for r in range(args.rounds):
                for c in (cells if r % 2 == 0 else cells[::-1]):
                    if None not in t[c]:                       # a cell past the limit is not run again
                        size, seconds = measure(name, c[0], c[1], args.repeats, beside, args.limit)
                        params = size or params
                        t[c].append(seconds)
            row.append(" ".join(cell_text(t[cells[0]], t[c], args.limit) for c in cells))
        print(f"{name:20s} {params / 1e6:7.2f}M | {row[0]:>39s} | {row[1]:>40s}", flush=True)
    print(f"system load at the end {os.getloadavg()[0]:.2f}")
    for name in args.configs:
        print(f"  {name}: {CONFIGS[name]}")


if __name__ == "__main__":
    main()
