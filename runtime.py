"""What every script shares: torchrun groups, atomic files, one-line errors.

No paper section: the plumbing under prune.py, curate.py, redpo.py, evaluate.py, vip_loop.py, the
models package and the toy worlds. It imports no other file of this project (tests/test_layout.py
checks it), so every file may import it.

  - Distribution: torchrun sets RANK / WORLD_SIZE and `dist_setup` joins the group (nccl on GPU,
    gloo on CPU); without torchrun everything runs as rank 0 of 1. Work is `shard`ed round robin
    over ranks and `gather`ed in index order; rank 0 decides (`broadcast`) and writes, the others
    wait at a `barrier`.
  - Files: every output is written to a temp file or folder beside its target and renamed into
    place, so that a crash never leaves half a file behind (`atomic_file`, `atomic_dir`).
  - Errors: bad input raises `UserError`; `run_cli(main)` prints it as one line and exits 2.

    torchrun --nproc_per_node 2 vip_loop.py     # dist_setup joins the group; `python vip_loop.py` does not
"""
import atexit
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import torch.distributed as dist


class UserError(Exception):
    """Bad input: the CLI prints the message on one line and exits with status 2."""


def run_cli(main):
    """Run `main()`; a UserError becomes one line on stderr and exit status 2, not a traceback."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


# ---------------------------------------------------------------------------------------------
# Distribution: torchrun sets RANK / WORLD_SIZE; without it everything runs as rank 0 of 1.
# ---------------------------------------------------------------------------------------------

def default_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dist_setup():
    """Join the torchrun group if there is one (nccl on GPU, gloo on CPU). Returns (rank, world, device)."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        # Leave the group before the interpreter tears down: an undestroyed gloo group can abort
        # the process at exit ("terminate called without an active exception") after all work is done.
        atexit.register(_leave_group)
    rank, world = rank_world()
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _leave_group():
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_world():
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def shard(items):
    """This rank's share of `items` (round robin), with their indices."""
    rank, world = rank_world()
    return [(i, x) for i, x in enumerate(items) if i % world == rank]


def gather(indexed):
    """Gather every rank's [(index, value)] and return the values in index order, on all ranks."""
    if dist.is_initialized():
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, indexed)
        indexed = [x for part in parts for x in part]
    return [v for _, v in sorted(indexed, key=lambda iv: iv[0])]


def broadcast(obj):
    """Rank 0's `obj` on every rank."""
    if dist.is_initialized():
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return obj


def barrier():
    if dist.is_initialized():
        dist.barrier()


# ---------------------------------------------------------------------------------------------
# Files: atomic writes, so that a crash never leaves half a file behind.
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_file(path):
    """Yield a temp path beside `path` (same extension) to write to; on success it becomes `path`
    in one rename (mode 0644), on failure it is removed. Readers never see half a file."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temp folder beside `path`; on success it replaces `path` in one rename."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(path), prefix=".tmp-")
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        if os.path.isdir(path):
            old = tmp + ".old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)


def write_json(path, obj):
    with atomic_file(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def json_safe(obj):
    """NaN / inf -> None (strict JSON), numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def save_video(path, frames, fps=8):
    """uint8 frames (F, H, W, 3) -> an .mp4 or .gif, written atomically."""
    import imageio.v2 as imageio
    with atomic_file(path) as tmp:
        if path.endswith(".gif"):
            imageio.mimsave(tmp, list(frames), duration=1000 / fps, loop=0)
        else:
            imageio.mimsave(tmp, list(frames), fps=fps, macro_block_size=1)
