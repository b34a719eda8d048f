"""The machinery under the paper's scripts: no paper section lives here.

  cli.py           bad input is one line: `UserError`, and `run_cli(main)` prints it and exits 2
  ranks.py         torchrun's process group: rank 0 of 1 without it; shard, gather, broadcast, barrier
  disk.py          atomic writes (a crash never leaves half a file), one set of readers that turn a
                   damaged file into one line, the run folder's lock
  run_folder.py    a run folder of vip_loop.py: which config may resume it, what is finished
  checkpoint.py    a training run's checkpoints and its metrics log
  generation.py    the sets of videos the steps generate: sampler settings, fixed batches over the ranks
  parallel.py      a rank's generation batches on worker threads
  residency.py     --lora on one GPU: the video model and the reward on it by turns
  cost.py          what one generation costs: parameters, TFLOPs, latency
  prompt_files.py  prompt files (.txt, .csv, .json) with their static labels, and the eval set's seeds
  teacher_cache.py the teacher's scored videos, kept across stages and runs
  tensorboard_log.py  --report_to tensorboard: a run's training steps, stage rows and clips on one step axis

Nothing here imports a paper file, a model or a reward (tests/test_layout.py): the paper's scripts
call down into it, and hand it what it must call back (run_folder.pairs_damage takes redpo's reader).

Importing this package sets how torch's CPU threads wait, below; it is the one place that does.
The project's scripts and the `models` package import from it before numpy and torch
(tests/test_threads.py checks that they do).
"""
import os
import sys

# CPU threads. At the end of every op torch's OpenMP threads wait for each other, by default
# spinning: beside another busy process the spinning takes the cores the others wait for, and a
# small model's many short ops then run several times slower. Waiting asleep (PASSIVE), two threads
# were never slower than one, alone or beside other jobs (bench/bench_threads.py, docs/speed).
# OpenMP reads this once, when torch loads it: the scripts and the `models` and `toy` packages import
# from infra before torch (tests/test_threads.py). A wait policy or spin count of your own is kept;
# OMP_NUM_THREADS is left to you and torchrun.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def keep_freed_memory():
    """glibc's malloc gives a freed block above its mmap threshold back to the kernel, and a small
    model's next activation of the same size then faults in fresh zeroed pages: 120,000 page faults
    per 8 toy clips, about 8% of their time. Freed memory stays in the heap instead (blocks up to
    32 MiB, 256 MiB of free heap top); the videos are the same. MALLOC_* settings of your own are kept."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return
    import ctypes
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt   # glibc only (not musl)
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3      # malloc.h
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 256 << 20)


keep_freed_memory()
