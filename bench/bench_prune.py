"""Benchmark of prune.py's block search: does skipping blocks cost anything beyond the
generations themselves, and does it copy the model?

    python bench/bench_prune.py                                  # tiny model, 8 prompts, CPU
    python bench/bench_prune.py --model animatediff --prompts 8 --steps 25

Prints
  time ratio   = search time / ((candidates + 1) x one eval-set generation and scoring)
  memory ratio = peak memory during the search / peak during one eval-set generation
Both near 1: the search is (candidates + 1) plain generations and holds one model. Memory is
torch.cuda.max_memory_allocated on a GPU, the process's resident set (sampled) on a CPU; the
extra memory is also given in units of one loaded model (its parameters and buffers).
"""
import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infra import prompt_files, ranks  # noqa: E402

import torch  # noqa: E402

import defaults  # noqa: E402
import models  # noqa: E402
import prune  # noqa: E402
import rewards  # noqa: E402


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory inside a `with`: CUDA's allocator peak, or the CPU resident set sampled every 5 ms."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.peak = 0

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.005)

    def __enter__(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            self._stop = threading.Event()
            self.peak = rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_bytes())


def model_bytes(model):
    parts = [model.pipe.unet, model.pipe.vae, model.pipe.text_encoder]
    return sum(t.numel() * t.element_size() for m in parts for t in list(m.parameters()) + list(m.buffers()))


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def pick(items, n):
    """n items spread evenly over the list (deterministic), or all of them."""
    if n is None or n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def main(argv=None):
    p = argparse.ArgumentParser(description="Cost of prune.py's candidate search versus plain generation.",
                                allow_abbrev=False)
    p.add_argument("--model", default="tiny")
    p.add_argument("--path", default=None, help="base model (hub id or directory)")
    p.add_argument("--reward", default="pixel")
    p.add_argument("--prompts", type=int, default=8, help="eval prompts")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--gen_batch", type=int, default=4, help="videos per generate call (default: 4)")
    args = p.parse_args(argv)
    device = ranks.default_device()
    model = models.load(args.model, path=args.path, device=device)
    reward = rewards.load_reward(args.reward, device=device)
    items = pick(prompt_files.read_prompts(defaults.EVAL_PROMPTS), args.prompts)
    prompts, seeds = [it["prompt"] for it in items], list(range(len(items)))
    gen_kw = {"steps": args.steps} if args.steps else {}
    search = prune.SearchSet(reward, prompts, seeds, gen_kw=gen_kw, batch_size=args.gen_batch, progress=False)
    one_set = lambda: prune.block_importance(model, prune.SearchVideos(model, search), blocks=[])
    one_set()  # warm-up
    with PeakMemory(device) as mem_one:
        t_one, _ = timed(one_set, device)
    n = len(model.blocks())
    with PeakMemory(device) as mem_search:
        t_search, _ = timed(lambda: prune.block_importance(model, prune.SearchVideos(model, search)), device)
    size = model_bytes(model)
    mib = 2 ** 20
    print(f"{args.model} on {device}: {n} candidate blocks, {len(prompts)} eval prompts, "
          f"steps {gen_kw.get('steps', model.defaults['steps'])}, one loaded model = {size / mib:.1f} MiB")
    print(f"one eval-set generation + scoring: {t_one:.2f} s; the search: {t_search:.2f} s")
    print(f"time ratio   search / ((candidates + 1) x one set) = {t_search / ((n + 1) * t_one):.3f}")
    print(f"peak memory: one set {mem_one.peak / mib:.1f} MiB, search {mem_search.peak / mib:.1f} MiB")
    print(f"memory ratio search / one set = {mem_search.peak / mem_one.peak:.3f}; "
          f"extra = {(mem_search.peak - mem_one.peak) / size:+.3f} loaded models")


if __name__ == "__main__":
    main()
