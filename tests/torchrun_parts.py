"""The suite's one torchrun launch (conftest.torchrun_run): each rank runs, one after another, the block
search (test_prune), the curation (test_curate), the training (test_redpo) and the one-shot loop
(test_vip_loop) on 2 ranks, each into its own folder of OUT; the four tests compare them with one
process. One launch instead of four: a launch's start (torchrun, two interpreters, their imports)
costs as much CPU as the work.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/torchrun_parts.py OUT REDPO_STAGE
"""
import json
import os
import pathlib
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(TESTS), TESTS]

from infra import ranks  # noqa: E402  (first: it sets how CPU threads wait before torch loads)

import torch  # noqa: E402


def prune_part(out):
    """test_prune's stage: k = 2 on the tiny model, the pixel reward; each rank writes what it chose."""
    import models
    import prune
    import rewards
    from test_prune import GEN, PROMPTS, SEEDS
    rank, world, _ = ranks.dist_setup()
    model = models.load("tiny")
    search = prune.SearchSet(rewards.load_reward("pixel"), PROMPTS, SEEDS, gen_kw=GEN, batch_size=2, progress=False)
    record = prune.prune_stage(model, search, 2, out)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"world": world, "model_removed": model.removed, "removed": record["removed"],
                   "candidates": [[c["block"], c["scores"]["total"]] for c in record["candidates"]]}, f)


def curate_part(out):
    """test_curate's stage 1: the teacher and its pruned student, the rule, pairs and teacher cache in `out`."""
    import curate
    import models
    import rewards
    from test_curate import BATCH, GEN, ITEMS, PROPS, REMOVED, SEEDS, TAU
    teacher = models.load("tiny")
    student = models.load("tiny")
    student.remove(REMOVED)
    curate.curate(curate.PairVideos(teacher, student, rewards.load_reward("pixel"), SEEDS, out + "/teacher_cache",
                                GEN, BATCH, False), ITEMS, PROPS, TAU, out + "/pairs")


def redpo_part(out, stage):
    """redpo.py's command line (test_redpo.TORCHRUN_ARGS), batch 1 per rank: the one-process batch of 2."""
    import redpo
    from test_redpo import torchrun_args
    redpo.main(torchrun_args(pathlib.Path(stage)) + ["--batch", "1", "--out", out])


def vip_loop_part(out):
    """vip_loop.py's tiny loop on the one-shot schedule (test_vip_loop)."""
    import vip_loop
    from test_reuse import TINY_LOOP
    vip_loop.main(TINY_LOOP + ["--oneshot", "--out", out])


def main(out, stage):
    torch.set_num_threads(1)
    ranks.dist_setup()
    prune_part(os.path.join(out, "prune"))
    curate_part(os.path.join(out, "curate"))
    redpo_part(os.path.join(out, "redpo"), stage)
    vip_loop_part(os.path.join(out, "vip_loop"))


if __name__ == "__main__":
    main(*sys.argv[1:3])
