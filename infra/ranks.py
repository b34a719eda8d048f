"""torchrun's process group: torchrun sets RANK / WORLD_SIZE and `dist_setup` joins the group (nccl
on GPU, gloo on CPU); without torchrun everything runs as rank 0 of 1. Work is `shard`ed round robin
over ranks and `gather`ed in index order; rank 0 decides (`broadcast`) and writes, the others wait at
a `barrier`.

    torchrun --nproc_per_node 2 vip_loop.py     # dist_setup joins the group; `python vip_loop.py` does not
"""
import atexit
import contextlib
import datetime
import os

import torch
import torch.distributed as dist


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
    """Every rank leaves the group together: a rank whose peer has already closed its sockets can
    abort at exit (gloo: "terminate called without an active exception"). On gloo the barrier gives
    up after a minute when a peer never comes (it crashed) instead of hanging."""
    if dist.is_initialized():
        if dist.get_backend() == "gloo":
            with contextlib.suppress(RuntimeError):
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=60))
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
