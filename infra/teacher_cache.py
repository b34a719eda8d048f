"""The teacher's scored videos, kept across stages and runs (curate.py's `Videos` reads and fills it).

A teacher video depends only on (model, prompt, seed, sampler settings), not on the student, so
its final latents are generated once and reused by every later stage and run with the same
teacher. One file per video, named by the sha256 of that key:

    cache_dir/<sha256>.pt = {"key", "latents" (C, F, h, w), "scores": {reward id: {dim: float}}}

Scores are kept per reward (and static flag): a cached video scored by another reward is decoded
and scored again, not generated. Files are written atomically by rank 0; a damaged one is said on
one line and generated again.
"""
import hashlib
import json
import os

import torch

from infra import disk


def teacher_key(model, prompt, seed, sampler):
    """What a teacher video depends on (sampler: the generate() settings that decide it), and its hash."""
    key = {"model": model.name, "source": model.source, "removed": list(model.removed),
           "dtype": str(model.unet.dtype), "prompt": prompt, "seed": int(seed), "sampler": sampler}
    return key, hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def reward_id(reward, static):
    """Cached scores are kept per reward (its .name, else its function/class name, and the weights
    it came from) and static flag."""
    name = getattr(reward, "name", None) or getattr(reward, "__name__", None) or type(reward).__name__
    if getattr(reward, "source", None):
        name = f"{name}:{reward.source}"
    return f"{name}|static" if static else name


def lookup(cache_dir, model, item, sampler, reward):
    """The cache's entry for one (prompt, seed, static) item: {"hash", "key", "rid", "cached"} and,
    when cached, "w_latents", "all_scores" and "w_scores" (None when this reward has not scored it)."""
    key, h = teacher_key(model, item["prompt"], item["seed"], sampler)
    rid = reward_id(reward, item["static"])
    entry = disk.read_or_none(disk.load_torch, os.path.join(cache_dir, h + ".pt"),
                              "generating that teacher video again")
    out = {"hash": h, "key": key, "rid": rid, "cached": entry is not None}
    if entry is not None:
        out.update(w_latents=entry["latents"], all_scores=entry["scores"], w_scores=entry["scores"].get(rid))
    return out


def save(cache_dir, res):
    """Write (or extend with a new reward's scores) the entry of lookup's result `res`, atomically."""
    entry = {"key": res["key"], "latents": res["w_latents"], "scores": {**res["all_scores"], res["rid"]: res["w_scores"]}}
    with disk.atomic_file(os.path.join(cache_dir, res["hash"] + ".pt")) as tmp:
        torch.save(entry, tmp)
