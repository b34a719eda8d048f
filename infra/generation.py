"""The sets of videos the paper's steps generate: what decides a video, and how a set is shared out.

No paper section: evaluate.py's eval sets, prune.py's block search and curate.py's teacher and
student videos all generate a list of (prompt, seed) items in fixed batches (the same batches for
any number of ranks, so no score depends on it), share the batches round robin over torchrun's
ranks and run a rank's batches side by side on worker threads (infra/parallel.py). A video depends
on its prompt, seed, the model's state and the sampler settings (`sampler_settings`).
"""
from tqdm import tqdm

from infra import parallel, ranks

SAMPLER_KEYS = ("num_frames", "steps", "guidance", "height", "width")   # the generate() settings that decide a video


def generation_settings(model, gen_kw=None):
    """The settings `model.generate(..., **gen_kw)` uses, the model's defaults where not given, and
    the fps the videos are written at (eval.json's "generation")."""
    given = gen_kw or {}
    settings = {k: model.defaults[k] if given.get(k) is None else given[k] for k in SAMPLER_KEYS}
    settings["fps"] = model.defaults.get("fps", 8)
    return settings


def sampler_settings(model, gen_kw=None):
    """The generate() arguments that decide a video, with the model's defaults filled in."""
    settings = generation_settings(model, gen_kw)
    return {k: settings[k] for k in SAMPLER_KEYS}


def batches(n, batch_size):
    """Index lists [0..b), [b..2b), ... covering range(n): fixed, whatever the number of ranks."""
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def rounds(fn, jobs, models, desc, progress=True):
    """fn(job) for this rank's share of `jobs`: job j runs on rank j % world, a rank's jobs side by
    side on worker threads (parallel.map_batches; fn must not change `models` for other threads).
    Yields, per round of `world` consecutive jobs, (the round's job indices, [(j, fn(job))] for
    this rank's job of the round, or []): the caller gathers what the ranks share (ranks.gather)
    and keeps the rest, round by round or at the end. A bar named `desc` on rank 0."""
    rank, world = ranks.rank_world()
    starts = range(0, len(jobs), world)
    made = parallel.map_batches(fn, [jobs[r + rank] for r in starts if r + rank < len(jobs)], *models)
    for r in tqdm(starts, desc=desc, unit="batch" if world == 1 else "round", disable=not progress or rank != 0):
        yield range(r, min(r + world, len(jobs))), [(r + rank, next(made))] if r + rank < len(jobs) else []
