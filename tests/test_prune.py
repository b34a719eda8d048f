"""prune.py: the block search, the removal, target properties, prune.json, torchrun."""
import copy
import json
import os

from infra import cli, cost, disk

import numpy as np
import pytest
import torch

import models
import prune
import rewards
from conftest import run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = ["a red car driving on a road", "a cat sleeping on a sofa"]
SEEDS = [3, 4]
GEN = {"steps": 2}
HARMLESS = "up_blocks.0.motion_modules.1"      # its output projection zeroed: skipping it changes nothing
CATASTROPHIC = "mid_block.motion_modules.0"    # its output projection x20: the video depends on it most


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny")


def outputs(model):
    """A fixed noise_pred call, compared bit for bit."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 16, 16, generator=g)
    return model.noise_pred(x, torch.tensor([10, 500]), ["a red car", "a blue boat"]).detach()


class DistanceReward:
    """Every dimension and the total = -mean |video - reference video of its prompt|: the reward
    of looking like the reference model. Removing a block scores 0 iff the videos do not change."""
    name = "distance"

    def __init__(self, reference):
        self.reference = reference  # prompt -> uint8 frames (F, H, W, 3)

    def __call__(self, videos, prompts, static=None):
        d = np.array([np.abs(v.astype(np.float64) - self.reference[p].astype(np.float64)).mean()
                      for v, p in zip(videos, prompts)])
        return {**{k: -d for k in rewards.DIMENSIONS}, "total": -d}


# --- the decisions, on hand-made scores ---------------------------------------------------------

def scores_of(totals):
    return {"base": {"total": 1.0}, "candidates": {b: {"total": t} for b, t in totals.items()}}


def test_choose_blocks_least_harm_first_ties_in_block_order():
    s = scores_of({"b0": 0.2, "b1": 0.9, "b2": 0.5, "b3": 0.9, "b4": -1.0})
    assert prune.choose_blocks(s, 1) == ["b1"]
    assert prune.choose_blocks(s, 3) == ["b1", "b3", "b2"]
    assert prune.choose_blocks(s, 5) == ["b1", "b3", "b2", "b0", "b4"]
    for k in (0, 6):
        with pytest.raises(cli.UserError, match="cannot remove"):
            prune.choose_blocks(s, k)


def test_target_properties_are_the_drops_largest_first():
    full = {"visual_quality": 2.6, "temporal_consistency": 2.5, "dynamic_degree": 2.7, "text_alignment": 2.5}
    pruned = {"visual_quality": 2.55, "temporal_consistency": 2.3, "dynamic_degree": 2.8, "text_alignment": 2.5}
    got = prune.target_properties(pruned, full)
    assert [d for d, _ in got] == ["temporal_consistency", "visual_quality"]  # equal is no drop
    assert got[0][1] == pytest.approx(0.2) and got[1][1] == pytest.approx(0.05)
    # Nothing dropped: the smallest margin, with its (non-positive) drop.
    better = {"visual_quality": 2.7, "temporal_consistency": 2.55, "dynamic_degree": 2.9, "text_alignment": 2.6}
    assert prune.target_properties(better, full) == [("temporal_consistency", pytest.approx(-0.05))]
    # A dimension the reward does not measure (NaN) is never a target.
    full_nan, pruned_nan = dict(full, text_alignment=float("nan")), dict(pruned, text_alignment=float("nan"))
    assert [d for d, _ in prune.target_properties(pruned_nan, full_nan)] == ["temporal_consistency", "visual_quality"]
    # M0's scores as evaluate.py's eval.json holds them (null where the reward measures nothing).
    eval_json = {d: {"mean": None if d == "text_alignment" else v, "ci95": 0.1, "n": 8} for d, v in full.items()}
    assert [d for d, _ in prune.target_properties(pruned, prune.flat_means(eval_json))] == [
        "temporal_consistency", "visual_quality"]


# --- the search on the tiny model -------------------------------------------------------------

def test_search_ranks_exactly_and_leaves_the_model_unchanged(tiny):
    model = copy.deepcopy(tiny)
    blocks = model.blocks()
    with torch.no_grad():
        blocks[HARMLESS].proj_out.weight.zero_()
        blocks[HARMLESS].proj_out.bias.zero_()
        blocks[CATASTROPHIC].proj_out.weight.mul_(20)
        blocks[CATASTROPHIC].proj_out.bias.mul_(20)
    frames, _ = model.generate(PROMPTS, SEEDS, **GEN)
    reward = DistanceReward(dict(zip(PROMPTS, frames)))
    state = {k: v.clone() for k, v in model.unet.state_dict().items()}
    y0 = outputs(model)

    search = prune.SearchSet(reward, PROMPTS, SEEDS, gen_kw=GEN, batch_size=2, progress=False)
    scores = prune.block_importance(model, prune.SearchVideos(model, search))

    totals = {b: s["total"] for b, s in scores["candidates"].items()}
    assert list(totals) == list(blocks)
    assert scores["base"]["total"] == 0.0                     # the reference itself
    assert totals[HARMLESS] == 0.0                             # identical videos without it
    assert all(t < 0 for b, t in totals.items() if b != HARMLESS)
    assert min(totals, key=totals.get) == CATASTROPHIC
    assert prune.choose_blocks(scores, 1) == [HARMLESS]
    assert prune.choose_blocks(scores, len(blocks))[-1] == CATASTROPHIC
    # Bit-identical afterwards: weights, function, and no block left as identity.
    after = model.unet.state_dict()
    assert set(after) == set(state) and all(torch.equal(state[k], after[k]) for k in state)
    assert torch.equal(outputs(model), y0)
    assert all("forward" not in vars(b) for b in model.blocks().values())
    # Parity: a skipped candidate scores exactly what the structurally removed model scores.
    for name in (CATASTROPHIC, "down_blocks.0.motion_modules.0"):
        cut = copy.deepcopy(model)
        cut.remove([name])
        f, _ = cut.generate(PROMPTS, SEEDS, **GEN)
        assert reward(f, PROMPTS)["total"].mean() == totals[name]


@pytest.fixture(scope="module")
def stage_one(tiny, tmp_path_factory):
    """prune_stage on a copy of M0 with the pixel reward, k = 2."""
    model = copy.deepcopy(tiny)
    before = {"sizes": cost.block_sizes(model), "params": model.num_parameters(), "outputs": outputs(model)}
    out = str(tmp_path_factory.mktemp("prune") / "stage_1")
    search = prune.SearchSet(rewards.load_reward("pixel"), PROMPTS, SEEDS, gen_kw=GEN, batch_size=2, progress=False)
    record = prune.prune_stage(model, search, 2, out)
    return model, record, out, before


def test_prune_stage_removes_the_chosen_blocks_for_real(stage_one):
    model, record, out, before = stage_one
    totals = {c["block"]: c["scores"]["total"] for c in record["candidates"]}
    expected = sorted(totals, key=lambda b: -totals[b])[:2]
    assert record["removed"] == expected and model.removed == expected
    assert not set(expected) & set(model.blocks())
    size = sum(before["sizes"][b] for b in expected)
    after = model.num_parameters()
    for key in ("total", "unet", "trainable"):
        assert before["params"][key] - after[key] == size
    assert record["num_parameters"] == {"before": before["params"], "after": after}
    assert record["removed_parameters"] == size
    assert record["tflops_per_step"]["after"] < record["tflops_per_step"]["before"]
    assert all(v > 0 for v in record["latency_s"].values())
    said = next(line for line in prune.summary_lines(record) if line.startswith("latency of one video"))
    assert said.endswith("(one timing each: on a shared CPU it varies by tens of percent; TFLOPs is the steady cost)")
    # The saved student is the pruned model: same blocks gone, same function.
    student = models.load("tiny", path=os.path.join(out, "pruned"))
    assert student.removed == expected
    assert torch.equal(outputs(student), outputs(model))
    assert not torch.equal(outputs(student), before["outputs"])


def test_prune_json_reloads_with_consistent_targets(stage_one):
    model, record, out, _ = stage_one
    saved = json.load(open(os.path.join(out, "prune.json")))
    assert saved["removed"] == record["removed"] and saved["model"] == "tiny"
    assert [c["block"] for c in saved["candidates"]] == list(cost.block_sizes(models.load("tiny")))
    for c in saved["candidates"]:
        assert set(c["scores"]) == set(rewards.DIMENSIONS) | {"total"}
        assert c["drop"] == pytest.approx(saved["base_scores"]["total"] - c["scores"]["total"])
    full, pruned = saved["full_scores"], saved["pruned_scores"]
    assert full == saved["base_scores"]                      # stage 1: the student is M0
    assert full["text_alignment"] is None                    # the pixel proxy cannot tell: null, not NaN
    # Independent check of the pruned scores: the reloaded student, generated again.
    student = models.load("tiny", path=os.path.join(out, "pruned"))
    frames, _ = student.generate(PROMPTS, SEEDS, **GEN)
    s = rewards.load_reward("pixel")(frames, PROMPTS)
    for d in ("visual_quality", "temporal_consistency", "dynamic_degree", "total"):
        assert pruned[d] == pytest.approx(float(np.mean(s[d])), abs=1e-9)
    # Targets: exactly the measured dimensions that dropped, largest drop first.
    drops = {d: full[d] - pruned[d] for d in rewards.DIMENSIONS if full[d] is not None}
    dropped = sorted([d for d in drops if drops[d] > 0], key=lambda d: -drops[d])
    if dropped:
        assert [d for d, _ in saved["target_properties"]] == dropped and not saved["target_fallback"]
        assert [x for _, x in saved["target_properties"]] == pytest.approx([drops[d] for d in dropped])
    else:
        assert saved["target_fallback"] and saved["target_properties"][0][0] == max(drops, key=drops.get)


def test_greedy_rescores_after_each_removal(tiny, tmp_path):
    model = copy.deepcopy(tiny)
    reward = rewards.load_reward("pixel")
    record = prune.prune_stage(model, prune.SearchSet(reward, PROMPTS[:1], SEEDS[:1], gen_kw=GEN, progress=False), 2,
                               str(tmp_path / "g"), greedy=True)
    first, second = record["rounds"]
    best = lambda rnd: max(rnd["candidates"], key=lambda c: c["scores"]["total"])["block"]
    assert first["chosen"] == [best(first)] and second["chosen"] == [best(second)]
    assert [c["block"] for c in second["candidates"]] == [b for b in cost.block_sizes(tiny) if b != best(first)]
    assert second["base"] == pytest.approx(  # skipping == removing: round 2 starts where round 1's choice was
        next(c["scores"] for c in first["candidates"] if c["block"] == best(first)), nan_ok=True)
    assert record["removed"] == [best(first), best(second)] == model.removed
    assert record["pruned_scores"]["total"] == pytest.approx(
        next(c["scores"]["total"] for c in second["candidates"] if c["block"] == best(second)))


# --- bad input: one line, nothing written -----------------------------------------------------

def test_bad_input_fails_before_writing(tiny, tmp_path):
    reward = rewards.load_reward("pixel")
    out = tmp_path / "stage"
    with pytest.raises(cli.UserError, match="cannot remove 8 blocks: the model has 7"):
        prune.prune_stage(tiny, prune.SearchSet(reward, PROMPTS, SEEDS, gen_kw=GEN), 8, str(out))
    with pytest.raises(cli.UserError, match="no eval prompts"):
        prune.prune_stage(tiny, prune.SearchSet(reward, [], [], gen_kw=GEN), 2, str(out))
    # A student folder of another model family.
    other = tmp_path / "other"
    tiny.save(str(other))
    meta = json.load(open(other / models.STUDENT_FILE))
    disk.write_json(str(other / models.STUDENT_FILE), dict(meta, model="animatediff"))
    with pytest.raises(cli.UserError, match="holds a animatediff model, not tiny"):
        prune.main(["--model", "tiny", "--student", str(other), "--out", str(out)])
    with pytest.raises(cli.UserError, match="not a student folder"):
        prune.main(["--model", "tiny", "--student", str(tmp_path), "--out", str(out)])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(cli.UserError, match="holds no prompts"):
        prune.main(["--model", "tiny", "--prompts", str(empty), "--out", str(out)])
    with pytest.raises(cli.UserError, match="--eval_seeds must be at least 1"):
        prune.main(["--model", "tiny", "--eval_seeds", "0", "--out", str(out)])
    assert not out.exists()
    r = run_script("prune.py", "--model", "tiny", "--reward", "pixel", "--blocks", "99", "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: cannot remove 99 blocks")
    assert not out.exists()


# --- torchrun: two ranks choose what one rank chooses -----------------------------------------

def test_torchrun_two_processes_choose_the_same_blocks(stage_one, torchrun_run):
    """conftest.torchrun_run ran stage_one's search on 2 ranks (conftest.torchrun_parts: prune_part)."""
    _, record, _, _ = stage_one
    out = torchrun_run / "prune"
    per_rank = [json.load(open(out / f"rank{i}.json")) for i in range(2)]
    for got in per_rank:
        assert got["world"] == 2
        assert got["removed"] == got["model_removed"] == record["removed"]
        assert [b for b, _ in got["candidates"]] == [c["block"] for c in record["candidates"]]
        assert [t for _, t in got["candidates"]] == pytest.approx(
            [c["scores"]["total"] for c in record["candidates"]], abs=1e-9)
    assert json.load(open(out / "prune.json"))["removed"] == record["removed"]
