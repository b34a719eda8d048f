"""Tests import the top-level scripts from the repository root and run on one CPU thread each
(the CI machine has 2 cores; torchrun tests start their own processes)."""
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
torch.set_num_threads(1)
