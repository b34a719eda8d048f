"""analysis/capacity.py: the capacity curve's measures, Holm over the cuts, and the 2D table, against
hand-computed numbers on synthetic run folders."""
import math
import os

import pytest
from infra import disk
from scipy import stats as sps

from analysis import capacity, claims, stats
from analysis.dimensions import DIMENSIONS

T1 = sps.t.ppf(0.975, 1)


def eval_json(path, vq, other=0.5):
    """2 prompts x 1 eval seed; visual quality vq[i] for video i, every other dimension `other`."""
    disk.write_json(path, {"per_video": [
        {"prompt": p, "seed": 0, "scores": {d: (vq[i] if d == "visual_quality" else other) for d in DIMENSIONS}}
        for i, p in enumerate(("a", "b"))]})


def run(root, name, seed, trained, pruned=(0.7, 0.7)):
    d = root / name
    os.makedirs(d / "full")
    os.makedirs(d / "stage_1")
    disk.write_json(d / "config.json", {"seed": seed, "method": "redpo"})
    eval_json(d / "full" / "eval.json", (0.9, 0.8))
    eval_json(d / "stage_1" / "eval_pruned.json", pruned)
    eval_json(d / "stage_1" / "eval.json", trained)
    disk.write_json(d / "stage_1" / "prune.json", {"removed": ["mid_block.motion_modules.0"],
                                                   "target_properties": [["visual_quality", 0.1]]})
    disk.write_json(d / "full" / "eval_search.json", {"per_video": [
        {"prompt": "s", "seed": i, "scores": {k: x for k in DIMENSIONS}} for i, x in enumerate((0.0, 0.5, 1.0))]})


def test_a_cut_s_damage_gains_and_redpo_minus_sft(tmp_path):
    cap, evidence = tmp_path / "cap", tmp_path / "ev"
    run(evidence, "redpo-s0", 0, (0.8, 0.8))
    # ReDPO trained (0.8, 0.8) and (0.9, 0.7) at seeds 0, 1; SFT (0.7, 0.7) at both.
    for s, trained in ((0, (0.8, 0.8)), (1, (0.9, 0.7))):
        run(cap, f"c1-auto-s{s}", s, trained)
        run(cap, f"c1-sft-s{s}", s, (0.7, 0.7))
    rows, scale, margins = capacity.shapes_curve(cuts=(1,), capacity_runs=str(cap), sweep_runs=str(cap),
                                                 evidence=str(evidence))
    (r,) = rows
    assert r["k"] == 1 and r["target"] == "visual_quality" and r["seeds"] == [0, 1]
    # Damage: full - pruned = (0.2, 0.1), one row for all seeds: prompts only, sd 0.0707, se 0.05, df 1.
    assert r["damage"]["mean"] == pytest.approx(0.15) and r["damage"]["ci95"] == pytest.approx(T1 * 0.05)
    assert r["damage"]["analysis"] == "prompts, the row shared by every seed"
    # ReDPO - SFT cells (prompt x seed) [[0.1, 0.2], [0.1, 0.0]]: MS_P = MS_E = 0.01, MS_S = 0, so
    # Var = MS_P / 4 = 0.0025 (the seed component below zero drops out), df 1.
    d = r["diff"]["target"]
    assert d["mean"] == pytest.approx(0.1) and d["se"] == pytest.approx(0.05) and d["df"] == pytest.approx(1.0)
    assert r["gain"]["SFT"]["target"]["mean"] == pytest.approx(0.0)
    assert r["gain"]["ReDPO"]["target"]["mean"] == pytest.approx(0.1)
    # z: visual quality over its spread 0.5, the other dimensions unchanged: 0.1 / 0.5 / 4 = 0.05.
    assert r["diff"][claims.Z]["mean"] == pytest.approx(0.05)
    assert r["verdict"]["target"] == "cannot tell" and r["margin"]["target"] == 0.0      # no cut moved: margin 0


def diff(mean, se, df=10):
    return {"mean": mean, "se": se, "df": df, "ci95": sps.t.ppf(0.975, df) * se}


def test_holm_over_the_cuts():
    # p's: ~2e-6, 2 P(T_10 > 2.5) = 0.0314, 2 P(T_10 > 2.3) = 0.0443: each alone "holds"; after
    # Holm over 3 cuts 0.0314 x 2 = 0.063 and then max(0.063, 0.0443) = 0.063: both "cannot tell".
    rows = [{"k": k, "damage": diff(0.1, 0.01), "diff": {"target": diff(m, 0.1), claims.Z: diff(m, 0.1)}, "margin": {"target": 0.0, claims.Z: 0.0}}
            for k, m in ((1, 1.0), (2, 0.25), (3, 0.23))]
    capacity.with_verdicts(rows)
    p2 = 2 * sps.t.sf(2.5, 10)
    assert [r["verdict"]["target"] for r in rows] == ["holds"] * 3
    assert [r["verdict_holm"]["target"] for r in rows] == ["holds", "cannot tell", "cannot tell"]
    assert rows[1]["p_holm"]["target"] == pytest.approx(2 * p2) == rows[2]["p_holm"]["target"]
    assert [k for k, _, _ in capacity.answer(rows, "target")] == [1]


def test_the_2d_curve_on_hand_computed_seeds():
    def metrics(p, r):
        return {"precision": p, "recall": r, "nll": 0.0, "swd": 0.0}
    per_seed = [{"seed": s, "teacher": metrics(0.95, 1.0), "pruned": metrics(0.95 - dmg, 0.5),
                 "sft": metrics(0.5, 0.6), "redpo": metrics(0.5 + dp, 0.6)}
                for s, (dmg, dp) in enumerate(((0.4, 0.1), (0.5, 0.2), (0.6, 0.3)))]
    data = {"config": {"n_blocks": 6}, "cuts": [{"removed": 5, "parameters": 10, "blocks": [1, 2, 3, 4, 5],
                                                 "per_seed": per_seed}]}
    (row,) = capacity.gmm_curve(data)
    # ReDPO - SFT precision (0.1, 0.2, 0.3): mean 0.2, sd 0.1, se 0.1 / sqrt(3), df 2.
    se = 0.1 / math.sqrt(3)
    assert row["diff"]["precision"]["mean"] == pytest.approx(0.2)
    assert row["diff"]["precision"]["ci95"] == pytest.approx(sps.t.ppf(0.975, 2) * se)
    assert row["diff"]["precision"]["p"] == pytest.approx(2 * sps.t.sf(0.2 / se, 2))
    assert row["verdict"]["precision"] == "cannot tell"          # p 0.074
    assert row["diff"]["recall"]["mean"] == 0.0 and row["damage"]["mean"] == pytest.approx(0.5)
    shipped = {"config": {"keep": 1, "seeds": [0, 1]}, "per_seed": [{m: per_seed[s][m] for m in ("sft", "redpo")}
                                                                     for s in (0, 1)]}
    assert capacity.reproduces_shipped(data, shipped) == ([0, 1], True)
    shipped["per_seed"][1]["redpo"] = metrics(0.1, 0.1)
    assert capacity.reproduces_shipped(data, shipped) == ([0, 1], False)
    assert stats.holm([row["diff"]["precision"]["p"]]) == [pytest.approx(row["diff"]["precision"]["p"])]


def test_the_figures_are_the_same_bytes_every_time(tmp_path):
    rows = [{"k": k, "damage": diff(0.01 * k, 0.005), "diff": {"target": diff(0.002 * k, 0.003), claims.Z: diff(0.01, 0.05)}}
            for k in (1, 3)]
    margins = {claims.Z: 0.17}
    for name in ("a.png", "b.png"):
        capacity.shapes_figure(rows, margins, str(tmp_path / name))
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert b"Software" not in (tmp_path / "a.png").read_bytes()      # no version or date in the file
