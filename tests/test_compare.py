"""toy/compare.py's queue and sharing, toy/w_sft_sweep.py's intervals and table, toy/precision.py's
projection: on hand-computed numbers and small synthetic run folders (no model runs)."""
import json
import math
import os
import subprocess
import sys

import pytest
from infra import disk

from scipy import stats as sps

from analysis import stats
from conftest import ROOT
from toy import compare, precision, w_sft_sweep


def test_the_queue_puts_the_sweep_first_and_copies_only_from_earlier_runs():
    jobs = compare.plan([0, 1, 2, 3, 4])
    names = [j["name"] for j in jobs]
    assert len(names) == len(set(names)) == 9 * 5 + 2 * 5 + 4 * 5 + 5 + 2 * 5
    assert names[:2] == ["s1-auto-s0", "s1-sft-s1"] and jobs[0]["copy"] == jobs[1]["copy"] == []
    first_main = min(i for i, j in enumerate(jobs) if j["group"] == "main")
    assert all(j["group"] == "sweep" and "-e" not in j["name"] for j in jobs[:first_main])  # 45 sweep runs first
    assert names[first_main:first_main + 10] == [f"{v}-s{s}" for s in range(5) for v in ("redpo", "sft")]
    for i, j in enumerate(jobs):
        assert all(src in names[:i] for src in j["after"]), j["name"]
    by_name = {j["name"]: j for j in jobs}
    assert by_name["sft-s3"]["copy"] == [("s1-sft-s3", compare.FULL + compare.CACHE + ("stage_1",))]
    assert by_name["dpo-s2"]["copy"][0][0] == "s1-dpo-s2" and by_name["redpo-s4"]["copy"][0][0] == "s1-auto-s4"
    # One-shot at the plan's equal budget: 6 epochs x 18 steps = 3 stages x 2 epochs x 18 steps at 72 pairs a stage.
    assert by_name["redpo-oneshot-budget-s0"]["argv"][:3] == ["--oneshot", "--epochs", "6"]
    assert by_name["s1-w3e2-s1"]["argv"] == ["--stages", "1", "--blocks", "2", "--w_sft", "3e2", "--seed", "1"]


def test_copies_wait_for_their_files_and_the_check_tells_bytes_from_scores(tmp_path):
    src, other = tmp_path / "a", tmp_path / "b"
    for d, latency in ((src, 1.0), (other, 2.0)):
        os.makedirs(d / "full")
        disk.write_json(d / "full" / "eval.json", {"per_video": [1, 2], "latency": latency})
        os.makedirs(d / "stage_1" / "pairs")
        (d / "stage_1" / "pairs" / "x.bin").write_bytes(b"same")
    assert compare.ready(src, compare.FULL) is False
    disk.write_json(src / "full" / "eval_search.json", {})
    assert compare.ready(src, compare.FULL) and not compare.ready(src, compare.FULL + compare.CACHE)
    check = compare.same_files(str(src), str(other), ("full/eval.json", "stage_1/pairs"))
    assert check["full/eval.json"] == {"same bytes": 0, "same content": ["eval.json"], "differ": []}
    assert check["stage_1/pairs"] == {"same bytes": 1, "same content": [], "differ": []}
    (other / "stage_1" / "pairs" / "x.bin").write_bytes(b"diff")
    assert compare.same_files(str(src), str(other), ("stage_1/pairs",))["stage_1/pairs"]["differ"] == ["x.bin"]
    # torch files: the same tensors written under other names (zip records) are the same content.
    import torch
    torch.save({"latents": torch.ones(2), "key": "k"}, src / "c.pt")
    torch.save({"latents": torch.ones(2), "key": "k"}, other / "tmp-other-name")
    os.rename(other / "tmp-other-name", other / "c.pt")
    assert compare.same_content(str(src / "c.pt"), str(other / "c.pt"))
    torch.save({"latents": torch.zeros(2), "key": "k"}, other / "c.pt")
    assert not compare.same_content(str(src / "c.pt"), str(other / "c.pt"))
    compare.seed_from(str(src), str(tmp_path / "new"), ("full", "stage_1/pairs"))
    assert (tmp_path / "new" / "stage_1" / "pairs" / "x.bin").read_bytes() == b"same"
    assert sorted(os.listdir(tmp_path / "new" / "full")) == ["eval.json", "eval_search.json"]


def test_the_crossed_interval_on_a_hand_computed_table():
    # Cells y = [[1, 2], [3, 6]] (2 prompts x 2 seeds): MS_P = 9, MS_S = 4, MS_E = 1;
    # Var(mean) = (9 + 4 - 1) / 4 = 3; df = 12^2 / (9^2 + 4^2 + 1^2) = 144 / 98.
    by_seed = [{("p", 0): 1.0, ("q", 0): 3.0}, {("p", 0): 2.0, ("q", 0): 6.0}]
    got = stats.interval(by_seed)
    df = 144 / 98
    assert got["mean"] == 3.0 and got["df"] == pytest.approx(df)
    assert got["ci95"] == pytest.approx(sps.t.ppf(0.975, df) * math.sqrt(3.0))
    assert precision.components(__import__("numpy").array([[1.0, 2.0], [3.0, 6.0]])) == pytest.approx((4.0, 1.5, 1.0))
    assert precision.half_width(4.0, 1.5, 1.0, 2, 2) == pytest.approx((got["ci95"], df))


def fake_run(root, name, w_sft, gain):
    """A shipped stage-1 run: 2 prompts x 1 eval seed, the trained row `gain` above the pruned one."""
    stage = root / name / "stage_1"
    os.makedirs(stage / "train")
    dims = w_sft_sweep.KEYS
    for f, add in (("eval_pruned.json", 0.0), ("eval.json", gain)):
        per_video = [{"prompt": p, "seed": 0, "scores": {k: 0.5 + i * 0.1 + add * (1 + i) for k in dims}}
                     for i, p in enumerate(("a red circle moving left", "a blue square moving up"))]
        disk.write_json(stage / f, {"per_video": per_video})
    disk.write_json(stage / "prune.json", {"target_properties": [["visual_quality", 0.05]]})
    disk.write_json(stage / "train" / "w_sft.json", {"w_sft": w_sft})
    disk.write_json(stage / "DONE", {})


def test_the_sweep_table_and_figure_from_shipped_runs(tmp_path):
    runs = tmp_path / "runs"
    for seed, w in ((0, 2000.0), (1, 3000.0)):
        fake_run(runs, f"s1-auto-s{seed}", w, 0.01 * (seed + 1))
        fake_run(runs, f"s1-w1e2-s{seed}", 100.0, 0.0)
        fake_run(runs, f"s1-sft-s{seed}", None, 0.02)
    rows = w_sft_sweep.write(str(runs), str(tmp_path))
    assert list(rows) == ["w1e2", "auto", "sft"]                      # by w_sft; auto at its mean, 2500
    assert rows["auto"]["x"] == 2500.0 and rows["auto"]["seeds"] == [0, 1]
    # auto: gains (0.01, 0.02) per seed on prompt a, doubled on prompt b: mean 0.0225.
    assert rows["auto"]["total"]["mean"] == pytest.approx(0.0225)
    assert rows["w1e2"]["total"]["mean"] == pytest.approx(0.0)
    text = open(tmp_path / "w_sft.md").read()
    assert "| auto | 2000-3000 | 2 | visual_quality | +0.02" in text
    assert os.path.getsize(tmp_path / "w_sft.png") > 1000
    assert json.dumps(rows["sft"]["w_sft"]) == "[null, null]"


def test_a_run_another_process_writes_is_left_to_it(tmp_path):
    assert not compare.busy(str(tmp_path))
    disk.hold_lock(str(tmp_path))             # as vip_loop.py does for its run folder
    assert compare.busy(str(tmp_path))


def test_the_list_piped_into_a_reader_that_stops_ends_quietly(tmp_path):
    # `python toy/compare.py --list | head -1`: the reader is gone before the queue (about 9 KB, more
    # than stdout's 8 KB buffer) is printed, so a write fails mid-run; run_cli ends it without a traceback.
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "toy", "compare.py"), "--list", "--runs", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()                 # the reader stops before the first line
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1 and err == "", err
