"""models.cpu_threads (issue 16): one thread for small models on a CPU, torch's default for large
ones, and never over a user's OMP_NUM_THREADS or torch.set_num_threads."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import torch
import models
seen = [torch.get_num_threads()]                   # torch's own choice
models.load("tiny")                                # 1.9M parameters
seen.append(torch.get_num_threads())
models.cpu_threads(models.CPU_THREADS_MIN_PARAMS)  # a large model: torch's default ...
seen.append(torch.get_num_threads())
models.load("tiny")                                # ... and the largest model loaded decides
seen.append(torch.get_num_threads())
torch.set_num_threads(seen[0] + 1)                 # the user's own call is kept
models.load("tiny")
seen.append(torch.get_num_threads())
print(*seen)
"""


def threads_seen(**env):
    env = dict({k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, **env)
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(root=ROOT)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return [int(x) for x in r.stdout.split()]


def test_small_models_take_one_thread_large_ones_the_default_users_choice_kept():
    default, *seen = threads_seen()
    assert seen == [1, default, default, default + 1]
    # OMP_NUM_THREADS in the environment (torchrun sets it too) is never overridden.
    assert threads_seen(OMP_NUM_THREADS="2") == [2, 2, 2, 2, 3]
