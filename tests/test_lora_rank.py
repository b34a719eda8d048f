"""analysis/lora_rank.py: the rule of docs/shapes/PLAN.md ("The LoRA student against full-weight ReDPO")
on run folders made from the shipped redpo-s0, with the LoRA runs' final rows moved by hand-set amounts."""
import glob
import os
import shutil

import pytest

from analysis import claims, lora_rank, report
from infra import disk

SCALE, MARGINS = report.fixed_scales(sorted(glob.glob(os.path.join(lora_rank.EVIDENCE, "redpo-s*"))))   # the module's


def runs_with(tmp_path, shifts):
    """full = the shipped redpo-s0; lora-R = the same with its final row's visual quality moved by shifts[R]."""
    src = os.path.join(lora_rank.EVIDENCE, "redpo-s0")
    shutil.copytree(src, tmp_path / "full")
    for r, shift in shifts.items():
        shutil.copytree(src, tmp_path / f"lora-{r}")
        path = tmp_path / f"lora-{r}" / "stage_3" / "eval.json"
        row = disk.read_json(path)
        for v in row["per_video"]:
            v["scores"]["visual_quality"] += shift
        disk.write_json(path, row)
    return str(tmp_path)


def test_the_smallest_rank_within_the_margin(tmp_path):
    s = SCALE["visual_quality"]        # a shift of x in visual quality moves z by x / (4 s)
    margin = MARGINS[claims.Z]
    inside, outside = 0.5 * margin * 4 * s, 1.5 * margin * 4 * s
    gaps, m, rank = lora_rank.choose(runs_with(tmp_path, {4: -outside, 16: inside, 64: 0.0}), lora_rank.EVIDENCE)
    assert m == pytest.approx(margin) and rank == 16
    assert gaps == {4: pytest.approx(-1.5 * margin), 16: pytest.approx(0.5 * margin), 64: pytest.approx(0.0, abs=1e-12)}


def test_none_within_the_margin_takes_the_largest_and_a_missing_run_chooses_nothing(tmp_path):
    out = 1.5 * MARGINS[claims.Z] * 4 * SCALE["visual_quality"]
    runs = runs_with(tmp_path, {4: -out, 16: out, 64: -out})
    assert lora_rank.choose(runs, lora_rank.EVIDENCE)[2] == 64
    shutil.rmtree(tmp_path / "lora-64")
    assert lora_rank.choose(runs, lora_rank.EVIDENCE)[2] is None
