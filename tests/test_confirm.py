"""toy/confirm.py: the queue of remade students, the confirmation set's seeds, the check against
the shipped rows and the verdict of the test fixed in docs/shapes/PLAN.md, on synthetic files."""
import json
import math
import os
import shutil

import pytest
from infra import disk
from scipy import stats as sps

from toy import confirm


def test_the_queue_remakes_the_shipped_runs_with_a_small_eval_set():
    jobs = confirm.plan()
    assert [j["name"] for j in jobs[:3]] == ["redpo-s0", "sft-s0", "redpo-s1"] and len(jobs) == 20
    assert jobs[0]["copy"] == [] and all(j["after"] == ["redpo-s0"] for j in jobs[1:])
    assert jobs[1]["argv"] == ["--remake", "--method", "sft", "--eval_seeds", "1", "--seed", "0"]
    assert jobs[2]["argv"] == ["--remake", "--eval_seeds", "1", "--seed", "1"]


def test_the_confirmation_set_has_only_fresh_seeds():
    prompts, seeds, _ = confirm.fresh_set(os.path.join(confirm.ROOT, "toy", "eval_prompts.txt"))
    assert len(prompts) == len(seeds) == 18 * 8 == len(set(zip(prompts, seeds)))
    assert min(seeds) == 4000 and max(seeds) == 11017
    assert not set(seeds) & {1000 * j + i for j in range(4) for i in range(18)}    # the eval set's


def row(path, scores):
    """An eval json of 2 prompts x 1 eval seed: scores[i] for every dimension of video i."""
    disk.write_json(path, {"per_video": [
        {"prompt": p, "seed": 4000 + i, "scores": {d: scores[i] for d in confirm.DIMENSIONS}}
        for i, p in enumerate(("a", "b"))]})


def test_the_check_and_the_verdict_on_hand_computed_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(confirm, "SEEDS", (0, 1))          # two training seeds stand for the plan's ten
    shipped, evidence = tmp_path / "conf", tmp_path / "evidence"
    # Evidence: one ReDPO run whose search-set spreads are 0.5 in every dimension and whose cut moves
    # each dimension by 0.1 (margin 0.2 x 0.1 = 0.02 per dimension, 0.04 on z).
    ev = evidence / "redpo-s0"
    os.makedirs(ev / "full")
    os.makedirs(ev / "stage_1")
    disk.write_json(ev / "full" / "eval_search.json", {"per_video": [
        {"prompt": "s", "seed": i, "scores": {d: x for d in confirm.DIMENSIONS}} for i, x in enumerate((0.0, 0.5, 1.0))]})
    disk.write_json(ev / "config.json", {"seed": 0})
    disk.write_json(ev / "stage_1" / "prune.json", {"base_scores": {d: 0.8 for d in confirm.DIMENSIONS},
                                                    "pruned_scores": {d: 0.7 for d in confirm.DIMENSIONS},
                                                    "target_properties": [["visual_quality", 0.1]]})
    scale, margin = confirm.fixed_test(str(evidence))
    assert scale == {d: pytest.approx(0.5) for d in confirm.DIMENSIONS} and margin == pytest.approx(0.04)
    # Two seeds; ReDPO - SFT per video: seed 0 (a, b) = (0.1, 0.3), seed 1 = (0.2, 0.2), on every
    # dimension, so on z (each over 0.5) twice that: cells [[0.2, 0.4], [0.6, 0.4]] (prompt x seed).
    for s, (ra, rb) in enumerate(((0.6, 0.8), (0.7, 0.7))):
        for m, scores in (("redpo", (ra, rb)), ("sft", (0.5, 0.5))):
            run = shipped / f"{m}-s{s}"
            os.makedirs(run / "stage_3")
            row(run / "stage_3" / "eval_fresh.json", scores)
            disk.write_json(run / "check.json", {"full/eval.json": {"max_abs_difference": 0.0, "videos": 18},
                                                 "training_logs": dict.fromkeys(("1", "2", "3"), True)})
    v = confirm.verdict(str(shipped), str(evidence))
    # y = [[0.2, 0.4], [0.6, 0.4]]: mean 0.4; MS_P = 2 (0.1^2 x 2) x 2 = 0.04, MS_S = 0, MS_E = 0.04;
    # the seed component below zero drops out: Var = MS_P / 4 = 0.01, df = 1.
    z = v["z"]
    assert v["seeds"] == [0, 1] and z["mean"] == pytest.approx(0.4) and z["df"] == pytest.approx(1.0)
    assert z["ci95"] == pytest.approx(sps.t.ppf(0.975, 1) * 0.1)
    assert v["verdict"] == "cannot tell" and v["plain"]["mean"] == pytest.approx(0.2)
    # A failed check leaves the student out: a row beyond the tolerance, or one training log not the
    # shipped one; a row within it (a pixel flipped by batched generation's rounding) passes.
    logs = dict.fromkeys(("1", "2", "3"), True)
    disk.write_json(shipped / "sft-s1" / "check.json", {"full/eval.json": {"max_abs_difference": 6e-5, "videos": 18},
                                                        "training_logs": logs})
    assert confirm.verdict(str(shipped), str(evidence))["seeds"] == [0, 1]
    disk.write_json(shipped / "sft-s1" / "check.json", {"full/eval.json": {"max_abs_difference": 2e-4, "videos": 18},
                                                        "training_logs": logs})
    assert confirm.verdict(str(shipped), str(evidence))["seeds"] == [0]
    disk.write_json(shipped / "sft-s1" / "check.json", {"full/eval.json": {"max_abs_difference": 0.0, "videos": 18},
                                                        "training_logs": dict(logs, **{"3": False})})
    assert confirm.verdict(str(shipped), str(evidence))["seeds"] == [0]
    # No interim look: with a student not yet remade there is no interval at all.
    shutil.rmtree(shipped / "sft-s1")
    partial = confirm.verdict(str(shipped), str(evidence))
    assert "z" not in partial and len(partial["students"]) == 3


def test_the_check_finds_a_changed_score(tmp_path):
    for d in ("mine", "theirs"):
        os.makedirs(tmp_path / d / "full")
        row(tmp_path / d / "full" / "eval.json", (0.5, 0.25))
    got = confirm.check_rows(str(tmp_path / "mine"), str(tmp_path / "theirs"))
    assert got["full/eval.json"] == {"max_abs_difference": 0.0, "videos": 2}
    assert math.isinf(got["stage_1/eval.json"]["max_abs_difference"])
    row(tmp_path / "mine" / "full" / "eval.json", (0.5, 0.375))
    assert confirm.check_rows(str(tmp_path / "mine"), str(tmp_path / "theirs"))["full/eval.json"]["max_abs_difference"] == 0.125


def write_log(path, steps):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in steps))


def test_the_check_compares_every_stages_training_log_exactly(tmp_path):
    steps = [{"step": 1, "loss": 0.5, "grad_norm": 1.25}, {"step": 2, "loss": 0.25, "grad_norm": 1.0}]
    for d in ("mine", "theirs"):
        for k in (1, 2, 3):
            write_log(tmp_path / d / f"stage_{k}" / "train" / "metrics.jsonl", steps)
    got = confirm.check_training(str(tmp_path / "mine"), str(tmp_path / "theirs"))
    assert list(got.values()) == [True, True, True]
    write_log(tmp_path / "mine" / "stage_2" / "train" / "metrics.jsonl", [steps[0], dict(steps[1], loss=0.25000001)])
    (tmp_path / "mine" / "stage_3" / "train" / "metrics.jsonl").unlink()
    assert list(confirm.check_training(str(tmp_path / "mine"), str(tmp_path / "theirs")).values()) == [True, False, False]
