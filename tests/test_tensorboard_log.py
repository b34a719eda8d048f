"""--report_to tensorboard (infra/tensorboard_log.py): the event files read back with TensorBoard's
own reader hold what metrics.jsonl and the eval jsons hold, once each, also after a resume; off, it
never imports TensorBoard."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_redpo import stage  # noqa: F401  (the fixture: a tiny teacher, a pruned student, 4 pairs)

from infra import disk, tensorboard_log

RUN = os.path.join(ROOT, "docs", "shapes", "runs", "redpo-s0")


def read_back(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def points(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def metrics(stage_dir):
    return [r for r in disk.read_jsonl(os.path.join(stage_dir, "train", "metrics.jsonl")) if "loss" in r]


def test_a_shipped_run_reads_back_as_its_files_on_one_step_axis(tmp_path):
    board = tensorboard_log.open_board("tensorboard", str(tmp_path / "tb"))
    for k in (1, 2, 3):
        board.stage(k, os.path.join(RUN, f"stage_{k}"), "redpo", "auto")
    board.close()
    acc = read_back(tmp_path / "tb")
    start, expected = 0, {}
    for k in (1, 2, 3):
        rows, stage_dir = metrics(os.path.join(RUN, f"stage_{k}")), os.path.join(RUN, f"stage_{k}")
        w_sft = disk.read_json(os.path.join(stage_dir, "train", "w_sft.json"))["w_sft"]
        for tag, f in (("train/loss", lambda r: r["loss"]), ("train/dpo_term", lambda r: r["dpo"]),
                       ("train/w_sft_x_sft_term", lambda r: w_sft * r["sft"]),
                       ("train/implicit_acc", lambda r: r["implicit_acc"]),
                       ("train/reward_margin", lambda r: r["reward_margin"]),
                       ("train/err_w_gap", lambda r: r["err_w"] - r["ref_err_w"]),
                       ("train/err_l_gap", lambda r: r["err_l"] - r["ref_err_l"]),
                       ("train/grad_norm", lambda r: r["grad_norm"]), ("train/lr", lambda r: r["lr"])):
            expected.setdefault(tag, []).extend((start + r["step"], f(r)) for r in rows)
        start += rows[-1]["step"]
        trained = disk.read_json(os.path.join(stage_dir, "eval.json"))
        pruned = disk.read_json(os.path.join(stage_dir, "eval_pruned.json"))
        expected.setdefault("trained/total", []).append((start, trained["scores"]["total"]["mean"]))
        expected.setdefault("pruned/dynamic_degree", []).append((start, pruned["scores"]["dynamic_degree"]["mean"]))
        expected.setdefault("cost/params_M", []).append((start, trained["params"]["trainable"] / 1e6))
    assert start == 12 + 36 + 36
    for tag, want in expected.items():
        got = points(acc, tag)
        assert [s for s, _ in got] == [s for s, _ in want], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), tag   # float32 events
    clips = acc.Images("clips")
    assert [c.step for c in clips] == [12, 48, 84]
    assert clips[0].encoded_image_string[:6] == b"GIF89a" and clips[0].width == 3 * 16 * 8 + 2 * 2


def stage_copy(tmp_path, k):
    """Stage k of the shipped run in a run folder of our own (its full/ beside it for the clip)."""
    run = tmp_path / "run"
    if not (run / "full").exists():
        shutil.copytree(os.path.join(RUN, "full"), run / "full")
    shutil.copytree(os.path.join(RUN, f"stage_{k}"), run / f"stage_{k}")
    return run / f"stage_{k}"


def test_a_resumed_run_has_each_point_once_with_the_values_of_its_files(tmp_path):
    log_dir = str(tmp_path / "run" / "tensorboard")
    s1 = stage_copy(tmp_path, 1)
    s2 = stage_copy(tmp_path, 2)
    rows2 = disk.read_jsonl(s2 / "train" / "metrics.jsonl")
    # The first process: stage 1 finished; stage 2 logged 30 steps, then died (its checkpoint at step 20).
    os.remove(s2 / "eval.json")
    first = tensorboard_log.open_board("tensorboard", log_dir)
    first.stage(1, str(s1), "redpo", "auto")
    stale = [dict(r, loss=-1.0) if "loss" in r else r for r in rows2 if r["step"] <= 30]   # values that will change
    first.training(2, stale, "redpo", "auto")
    first.writer.flush()                       # no close: the process was killed
    # The second: the log reopened, stage 1 written again from its files, stage 2's metrics.jsonl cut
    # back to its checkpoint (redpo's resume) and the rest trained and logged, then its eval written.
    second = tensorboard_log.open_board("tensorboard", log_dir)
    second.stage(1, str(s1), "redpo", "auto")
    with open(s2 / "train" / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows2 if r["step"] <= 20)
    second.stage(2, str(s2), "redpo", "auto")                  # the stage begins: its steps so far
    with open(s2 / "train" / "metrics.jsonl", "w") as f:      # the loop appends the steps it trains ...
        f.writelines(json.dumps(r) + "\n" for r in rows2)
    second.training(2, [r for r in rows2 if r["step"] > 20], "redpo", "auto")   # ... and logs them
    shutil.copy(os.path.join(RUN, "stage_2", "eval.json"), s2 / "eval.json")
    second.stage(2, str(s2), "redpo", "auto")                  # the stage ends: its rows, cost and clip
    second.stage(2, str(s2), "redpo", "auto")                  # again: nothing new
    second.close()
    acc = read_back(log_dir)
    want = [(r["step"] + (0 if k == 1 else 12), r["loss"]) for k, rows in ((1, metrics(s1)), (2, rows2))
            for r in rows if "loss" in r]
    got = points(acc, "train/loss")
    assert [s for s, _ in got] == [s for s, _ in want] == list(range(1, 49))
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)
    assert [s for s, _ in points(acc, "trained/total")] == [12, 48]
    assert [c.step for c in acc.Images("clips")] == [12, 48]
    assert len(os.listdir(log_dir)) == 1       # the first process's events file is gone


def test_a_restarted_tensorboard_drops_the_old_files_points(tmp_path):
    """A TensorBoard that read the first process's file before it was removed: the second file's
    START at step 0 purges what it held (the reader here keeps the old file and reads both)."""
    log_dir = tmp_path / "tb"
    first = tensorboard_log.open_board("tensorboard", str(log_dir))
    first.training(1, [{"step": s, "loss": 9.0, "dpo": 0, "sft": 0, "implicit_acc": 0, "reward_margin": 0, "err_w": 0,
                        "ref_err_w": 0, "err_l": 0, "ref_err_l": 0, "lr": 1} for s in (1, 2, 3)], "sft", None)
    first.close()
    kept = tmp_path / "kept"
    shutil.copytree(log_dir, kept)
    second = tensorboard_log.open_board("tensorboard", str(log_dir))
    second.training(1, [{"step": 1, "loss": 5.0, "dpo": 0, "sft": 0, "implicit_acc": 0, "reward_margin": 0, "err_w": 0,
                         "ref_err_w": 0, "err_l": 0, "ref_err_l": 0, "lr": 1}], "sft", None)
    second.close()
    for f in os.listdir(log_dir):
        shutil.copy(log_dir / f, kept / f)      # the old file first (its name sorts first), then the new
    assert points(read_back(kept), "train/loss") == [(1, 5.0)]


def test_off_writes_nothing_and_never_imports_tensorboard(tmp_path):
    code = ("import sys; from infra import tensorboard_log as t; b = t.open_board('none', sys.argv[1]); "
            "b.training(1, [{'step': 1, 'loss': 1.0}], 'redpo', 1.0); b.stage(1, sys.argv[1], 'redpo', 1.0); b.close(); "
            "print(b is t.OFF, any(m.startswith(('tensorboard', 'torch.utils.tensorboard')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "tb")], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "False"], out.stderr
    assert not (tmp_path / "tb").exists()
    with pytest.raises(ValueError, match="none, tensorboard"):
        tensorboard_log.open_board("wandb", str(tmp_path))


# --- redpo.py and vip_loop.py with --report_to tensorboard -------------------------------------


def train_tiny(stage, out, board, **kw):
    import models
    import redpo
    teacher = models.load("tiny")
    student = models.load("tiny", path=str(stage / "student"))
    settings = redpo.Settings(**{"lr": 1e-3, "batch": 2, "max_steps": 4, "ckpt_every": 2, "log_every": 1, **kw})
    return redpo.train(student, teacher, str(stage / "pairs"), str(out), settings, board.for_stage(1))


def test_redpo_logs_each_step_once_across_a_kill_and_resume(stage, tmp_path):
    out = tmp_path / "train"
    board = tensorboard_log.open_board("tensorboard", str(out / "tensorboard"))
    train_tiny(stage, out, board)
    board.close()
    shutil.rmtree(out / "checkpoint-000004")           # killed after step 4's log line, before its checkpoint
    board = tensorboard_log.open_board("tensorboard", str(out / "tensorboard"))
    train_tiny(stage, out, board)                      # resumes at step 2: steps 1-2 from metrics.jsonl, 3-4 trained
    board.close()
    rows = [r for r in disk.read_jsonl(out / "metrics.jsonl") if "loss" in r]
    acc = read_back(out / "tensorboard")
    for tag, key in (("train/loss", "loss"), ("train/implicit_acc", "implicit_acc"), ("train/grad_norm", "grad_norm")):
        got = points(acc, tag)
        assert [s for s, _ in got] == [1, 2, 3, 4] == [r["step"] for r in rows], tag
        assert [v for _, v in got] == pytest.approx([r[key] for r in rows], rel=1e-6), tag
    assert [v for _, v in points(acc, "train/w_sft_x_sft_term")] == pytest.approx([1e4 * r["sft"] for r in rows], rel=1e-6)


def test_the_collapse_alarm_prints_one_line_and_the_run_goes_on(stage, tmp_path, monkeypatch, capsys):
    import functools

    import redpo
    from analysis import alarm
    # The rule at a ratio every step passes (0: any error above none), over 2 steps: it fires at step 2.
    monkeypatch.setattr(redpo, "CollapseAlarm", functools.partial(alarm.CollapseAlarm, window=2, ratio=0.0))
    summary = train_tiny(stage, tmp_path / "train", tensorboard_log.OFF)
    assert summary["steps"] == 4
    lines = [line for line in capsys.readouterr().err.splitlines() if "collapse alarm" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: collapse alarm at step 2:"), lines


def test_vip_loop_reports_a_finished_run_to_tensorboard(tmp_path):
    """The shipped default run, re-run with --report_to tensorboard: every stage is done, so the log
    is written from its files alone: the three stages' steps on one axis, their rows and clips."""
    import vip_loop
    run = tmp_path / "redpo-s0"
    shutil.copytree(RUN, run)
    vip_loop.main(["--out", str(run), "--report_to", "tensorboard"])
    acc = read_back(run / "tensorboard")
    assert [s for s, _ in points(acc, "train/loss")] == list(range(1, 85))
    assert [s for s, _ in points(acc, "trained/total")] == [12, 48, 84]
    assert [c.step for c in acc.Images("clips")] == [12, 48, 84]
