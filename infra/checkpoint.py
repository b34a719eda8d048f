"""A training run's checkpoints and log (redpo.py's loop, Sec. 3.4.1): out/checkpoint-000100/{model/,
optimizer.pt, state.json}, the last `keep` kept, and metrics.jsonl. A checkpoint is one folder that
rebuilds the student; every write is atomic; a damaged checkpoint falls back to the one before.
"""
import glob
import json
import os
import shutil
import sys

import torch

from infra import disk, ranks
from infra.cli import UserError


def checkpoints(out_dir):
    return sorted(glob.glob(os.path.join(out_dir, "checkpoint-*[0-9]")))


def save_checkpoint(out_dir, student, optimizer, state, keep):
    with disk.atomic_dir(os.path.join(out_dir, f"checkpoint-{state['step']:06d}")) as tmp:
        student.save(os.path.join(tmp, "model"))
        torch.save(optimizer.state_dict(), os.path.join(tmp, "optimizer.pt"))
        disk.write_json(os.path.join(tmp, "state.json"), state)
    for old in checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old)


def resume(out_dir, student, optimizer, config):
    """Load the latest checkpoint in out_dir that reads back, if any: a damaged one (cut short, a
    disk that failed) is said on one line and the one before it is used, down to starting over.
    Returns its state (step 0 when none)."""
    for ckpt in reversed(checkpoints(out_dir)):
        try:   # read everything before changing the student, so that a damaged file changes nothing
            state = disk.read_json(os.path.join(ckpt, "state.json"))
            if state["config"] != config:
                changed = sorted(k for k in config if state["config"].get(k) != config[k])
                raise UserError(f"{out_dir} holds a run with other settings ({', '.join(changed)}); "
                                "use another --out, or delete it to start over")
            optimizer_state = disk.load_torch(os.path.join(ckpt, "optimizer.pt"), weights_only=False)
            student.load_weights(os.path.join(ckpt, "model"))
        except disk.Unreadable as e:
            earlier = [c for c in checkpoints(out_dir) if c < ckpt]
            if ranks.rank_world()[0] == 0:
                print(f"{e.path} {e.problem}; resuming from "
                      + (os.path.basename(earlier[-1]) if earlier else "the start (no earlier checkpoint)"),
                      file=sys.stderr)
            continue
        optimizer.load_state_dict(optimizer_state)
        return state
    return {"step": 0, "skipped": 0}


def append_metrics(path, rows, upto=None):
    """Add rows to metrics.jsonl; with `upto`, first drop lines past that step (a resumed run)."""
    old = disk.read_jsonl(path, skip_damaged=True) if os.path.isfile(path) else []  # a log: keep what reads
    lines = [json.dumps(r) + "\n" for r in old + rows if upto is None or r["step"] <= upto]
    with disk.atomic_file(path) as tmp, open(tmp, "w") as f:
        f.writelines(lines)
