"""Tests import the top-level scripts from the repository root and run on one CPU thread each
(the CI machine has 2 cores; torchrun tests start their own processes)."""
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
torch.set_num_threads(1)


def run_script(script, *args, timeout=300):
    """Run one of the project's scripts as a user would (one thread, from the repository root)."""
    import subprocess
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
