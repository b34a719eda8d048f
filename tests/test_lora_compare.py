"""analysis/lora_compare.py: the non-inferiority test of docs/shapes/PLAN.md ("The LoRA student
against full-weight ReDPO") on run folders made from the shipped redpo-s<S>, their final rows moved by
hand-set amounts, so that every number it reports is known beforehand."""
import glob
import os
import shutil

import pytest

from analysis import claims, lora_compare, report
from infra import disk

SCALE, MARGINS = report.fixed_scales(sorted(glob.glob(os.path.join(lora_compare.EVIDENCE, "redpo-s*"))))


def lora_runs(tmp_path, shift, seeds=lora_compare.SEEDS):
    """lora-s<S> = the shipped redpo-s<S> with its final row's visual quality moved by `shift` (and its
    total, the mean of the four dimensions, by shift / 4)."""
    for s in seeds:
        dest = tmp_path / f"lora-s{s}"
        shutil.copytree(os.path.join(lora_compare.EVIDENCE, f"redpo-s{s}"), dest)
        path = dest / "stage_3" / "eval.json"
        row = disk.read_json(path)
        for v in row["per_video"]:
            v["scores"]["visual_quality"] += shift
            v["scores"]["total"] += shift / 4
        disk.write_json(path, row)
    return str(tmp_path)


@pytest.mark.parametrize("z, verdict", [(-0.5, "holds"), (-1.5, "does not hold")])
def test_the_claim_is_the_shift_in_margins(tmp_path, z, verdict):
    margin = MARGINS[claims.Z]
    shift = z * margin * 4 * SCALE["visual_quality"]       # visual quality moved by x moves z by x / (4 s)
    claim, m, beside, seeds = lora_compare.compare(lora_runs(tmp_path, shift), lora_compare.EVIDENCE)
    assert m == pytest.approx(margin) and seeds == list(lora_compare.SEEDS)
    assert claim["diff"]["mean"] == pytest.approx(z * margin) and claim["diff"]["ci95"] == pytest.approx(0, abs=1e-12)
    assert claim["kind"] == "non-inferior" and claim["verdict"] == verdict
    plain = dict(beside)["final student, the Average (plain); LoRA - full"]
    assert plain["mean"] == pytest.approx(shift / 4)                 # the plain Average: the mean of 4 dimensions
    # The stages' gains are the shipped run's for both (stage 3's trained row moved by the shift).
    gains = [d["mean"] for what, d in beside if what.startswith("stage 1")]
    assert gains[0] == pytest.approx(gains[1])


def test_only_finished_runs_count(tmp_path):
    runs = lora_runs(tmp_path, 0.0, seeds=[0, 1])
    shutil.rmtree(tmp_path / "lora-s1" / "stage_3")
    claim, _, _, seeds = lora_compare.compare(runs, lora_compare.EVIDENCE)
    assert seeds == [0] and claim["diff"]["n_seeds"] == 1
