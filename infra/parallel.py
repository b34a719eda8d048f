"""Generation on every CPU core: fixed batches of videos on worker threads, one torch thread each.

No paper section: how the loop's generations (evaluate.py's eval sets, prune.py's block search,
curate.py's teacher and student videos) use a CPU. A small model's ops are too small for torch's
threads to share (most run on one core while the other waits), so instead whole batches run side
by side, each on one thread: the same batches as one after the other, so the same videos, bit for
bit (tests/test_parallel.py), at up to twice the clips per second on 2 cores (docs/speed/README.md).
torch releases the GIL inside its ops, so Python threads suffice.

One batch after another on a GPU, with one torch thread (OMP_NUM_THREADS=1, torchrun's ranks) and for
a model whose `generate` is not safe to call from two threads (`parallel_generate` unset: a
diffusers pipeline keeps its scheduler's state on itself; ToyModel builds its own per call).

    python vip_loop.py                       # the toy loop: two batches at a time on 2 cores
    OMP_NUM_THREADS=1 python vip_loop.py     # one batch at a time
"""
import collections
import concurrent.futures
import itertools

import torch


def workers(models, n_items):
    """How many batches to run at once: torch's CPU threads, if every model allows it (else 1)."""
    if not all(getattr(m, "parallel_generate", False) and torch.device(m.device).type == "cpu" for m in models):
        return 1
    return max(1, min(torch.get_num_threads(), n_items))


def map_batches(fn, items, *models):
    """fn(item) for every item, yielded in order; up to workers(models, ...) items at once, each on
    its own thread with one torch thread (torch's thread count is restored at the end). fn must
    not change the models for the other threads (model.skip is per thread)."""
    items = list(items)
    n = workers(models, len(items))
    if n == 1:
        yield from map(fn, items)
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # new threads take this count when they first run a torch op
    pool = concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="generate")
    try:
        todo = iter(items)
        running = collections.deque(pool.submit(fn, item) for item in itertools.islice(todo, 2 * n))
        while running:
            result = running.popleft().result()
            for item in todo:     # keep every worker busy while the caller uses the result
                running.append(pool.submit(fn, item))
                break
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)
