"""Faults: every file the project writes or reads, damaged, and a full disk.

A damaged file is one line naming it, what is wrong and what to do (exit 2, no traceback), and no
other file of the run changes; where the project can remake the file by itself it does, says so
on one line, and ends where the undamaged run ended. One finished 1-stage tiny run (the module
fixture) is copied for each case and re-entered in-process through cli.run_cli, as
`python vip_loop.py ...` runs it; one case runs the real command. The kill-at-random-moments check
is scripts/kill_resume.py (minutes long: docs/design.md, "Killed at any moment").
"""
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import types

import pytest
from infra import checkpoint, cli, disk, run_folder

import torch

import models
import redpo
import vip_loop
from conftest import ROOT, run_script
from toy import shapes_model

FLAGS = ["--model", "tiny", "--reward", "pixel", "--stages", "1", "--blocks", "2",
         "--eval_prompts", "1", "--pool_prompts", "3", "--steps", "2"]


def loop(run, capsys, *extra):
    """vip_loop.py FLAGS --out run, in this process. Returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        cli.run_cli(lambda: vip_loop.main([*FLAGS, "--out", str(run), *extra]))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err):
    """The error line of a failed run; it must be the only one, with no traceback."""
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def hashes(run):
    return {os.path.relpath(os.path.join(d, f), run): hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            for d, _, files in os.walk(run) for f in files}


def temps(run):
    return [os.path.join(d, n) for d, dirs, files in os.walk(run) for n in dirs + files if n.startswith(disk.TEMP)]


def cut_short(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])


def overwrite_with_text(path):
    open(path, "w").write("this is not what the file should hold\n")


def trainable(path):
    return disk.load_safetensors(os.path.join(path, models.STUDENT_WEIGHTS))


def per_video(path):
    return disk.read_json(path)["per_video"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("faults") / "run"
    code = 0
    try:
        cli.run_cli(lambda: vip_loop.main([*FLAGS, "--out", str(run)]))
    except SystemExit as e:
        code = e.code
    assert code == 0 and (run / "stage_1" / "DONE").is_file()
    return run


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run, under the same folder name (report.md names it)."""
    return shutil.copytree(finished, tmp_path / "run")


def unfinish(run, *names):
    """Take the run back to before these outputs of stage 1 were written."""
    for name in names:
        path = run / "stage_1" / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


# --- damaged outputs of finished steps: one line, the fix, nothing else changed ------------------

CASES = {  # file, how it is damaged, outputs taken back first (so that the file is read), what the fix says
    "config.json": ("config.json", "json", (), "delete it and re-run the same command"),
    "full eval.json": ("full/eval.json", "json", (), "delete the folder {run}/full and re-run"),
    "stage eval.json": ("stage_1/eval.json", "cut", (),
                        "delete {run}/stage_1/eval.json and {run}/stage_1/videos.npz and re-run"),
    "videos_pruned.npz": ("stage_1/videos_pruned.npz", "cut", (),
                          "delete {run}/stage_1/eval_pruned.json and {run}/stage_1/videos_pruned.npz and re-run"),
    "prune.json": ("stage_1/prune.json", "json", ("DONE", "eval.json"), "delete the folder {run}/stage_1 and re-run"),
    "student weights": ("stage_1/student/trainable.safetensors", "cut", ("DONE",),
                        "delete the folder {run}/stage_1 and re-run"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_damaged_output_is_one_line_naming_it_and_the_fix(case, run, finished, capsys):
    name, damage, undo, fix = CASES[case]
    unfinish(run, *undo)
    {"json": lambda p: open(p, "w").write('{"model": "tiny", '), "cut": cut_short}[damage](run / name)
    before = hashes(run)
    code, _, err = loop(run, capsys)
    line = one_line(err)
    assert code == 2 and f"{run / name} " in line and fix.format(run=run) in line, line
    assert hashes(run) == before and not temps(run)
    if case == "stage eval.json":   # doing what it says ends the run with the same scores
        os.remove(run / "stage_1" / "eval.json")
        os.remove(run / "stage_1" / "videos.npz")
        assert loop(run, capsys)[0] == 0
        assert per_video(run / "stage_1" / "eval.json") == per_video(finished / "stage_1" / "eval.json")


def test_the_real_command_prints_one_line_and_exits_2(run):
    open(run / "config.json", "w").write("{")
    r = run_script("vip_loop.py", *FLAGS, "--out", str(run))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().splitlines() == [
        f"error: {run / 'config.json'} is not valid JSON (Expecting property name enclosed in double quotes "
        f"at line 1, column 2); delete it and re-run the same command: it is written again from the flags"]


# --- inputs: prompt files, the shipped toy teacher ---------------------------------------------

def test_a_prompt_file_that_is_not_utf8(tmp_path, capsys):
    bad = tmp_path / "prompts.txt"
    bad.write_bytes("a red car driving on a road\n".encode() + "caf\xe9 at night\n".encode("latin-1"))
    code, _, err = loop(tmp_path / "out", capsys, "--prompts", str(bad))
    line = one_line(err)
    assert code == 2 and f"{bad} is not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8" in line, line
    assert not (tmp_path / "out").exists()   # refused before writing anything


def test_a_damaged_toy_teacher(tmp_path, capsys):
    shipped = hashes(shapes_model.TEACHER_DIR)
    copy = shutil.copytree(shapes_model.TEACHER_DIR, tmp_path / "teacher")
    cut_short(copy / "model.safetensors")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.run_cli(lambda: vip_loop.main(["--model", "toy", "--path", str(copy), "--out", str(tmp_path / "out")]))
    line = one_line(capsys.readouterr().err)
    assert e.value.code == 2 and f"{copy / 'model.safetensors'} is cut short or damaged (SafetensorError" in line
    assert shapes_model.TEACHER_FIX in line and not (tmp_path / "out").exists()
    assert hashes(shapes_model.TEACHER_DIR) == shipped
    if os.path.exists(os.path.join(ROOT, ".git")):   # the shipped files themselves: restored from git
        fix = disk.default_fix(os.path.join(shapes_model.TEACHER_DIR, "model.safetensors"), shapes_model.TEACHER_FIX)
        assert fix.endswith("restore it with `git checkout -- toy/teacher/model.safetensors`")


# --- what remakes itself -----------------------------------------------------------------------

def test_damaged_pairs_and_cache_of_an_unfinished_stage_are_made_again(run, finished, capsys):
    unfinish(run, "DONE", "student", "eval.json", "videos.npz")
    overwrite_with_text(run / "stage_1" / "pairs" / "latents" / "l_00001.pt")
    entry = sorted((run / "teacher_cache").iterdir())[0]
    cut_short(entry)
    code, _, err = loop(run, capsys)
    assert code == 0 and "Traceback" not in err, err[-3000:]
    assert f"stage 1: {run}/stage_1/pairs/latents/l_00001.pt is cut short or damaged" in err
    assert "; curating the pairs again" in err
    assert f"{entry} is cut short or damaged" in err and "generating that teacher video again" in err
    # The same pairs. The teacher video made again alone, not in its batch of 3, matches to float
    # rounding only: batch size changes the order of CPU sums (a 1e-4 difference in the latents).
    new, old = (disk.read_jsonl(r / "stage_1" / "pairs" / "pairs.jsonl") for r in (run, finished))
    assert [(p["prompt"], p["seed"], p["property"]) for p in new] == [(p["prompt"], p["seed"], p["property"]) for p in old]
    for p in old:
        for f in (p["winner"], p["loser"]):
            torch.testing.assert_close(torch.load(run / "stage_1" / "pairs" / f),
                                       torch.load(finished / "stage_1" / "pairs" / f), atol=1e-3, rtol=0)
    torch.testing.assert_close(torch.load(entry)["latents"], torch.load(finished / "teacher_cache" / entry.name)["latents"],
                               atol=1e-3, rtol=0)
    fresh, old = trainable(run / "stage_1" / "student"), trainable(finished / "stage_1" / "student")
    assert all(torch.equal(fresh[k], old[k]) for k in old)
    assert per_video(run / "stage_1" / "eval.json") == per_video(finished / "stage_1" / "eval.json")


def test_pairs_cut_short_are_found(run):
    pairs = run / "stage_1" / "pairs"
    lines = open(pairs / "pairs.jsonl").read().splitlines(keepends=True)
    cut_short(pairs / "pairs.jsonl")
    assert re.match(f"{pairs}/pairs.jsonl line [23] is not valid JSON", run_folder.pairs_damage(str(pairs), redpo.read_pairs))
    with pytest.raises(disk.Unreadable, match="re-run curate.py"):   # redpo.py on its own: one line
        redpo.read_pairs(str(pairs))
    open(pairs / "pairs.jsonl", "w").writelines(lines[:1])             # cut at the end of a line
    assert run_folder.pairs_damage(str(pairs), redpo.read_pairs) == f"{pairs}/pairs.jsonl holds 1 of the 3 pairs that summary.json counts"


def test_a_damaged_checkpoint_falls_back_to_the_one_before(finished, tmp_path, capsys):
    pairs = str(finished / "stage_1" / "pairs")

    def train(out):
        student = models.load("tiny", path=str(finished / "stage_1" / "pruned"))
        redpo.train(student, teacher, pairs, str(out), redpo.Settings(lr=1e-4, batch=2, epochs=1, ckpt_every=1, log_every=1))
        return {n: p.detach().clone() for n, p in student.trainable_named_parameters()}

    teacher = models.load("tiny")
    straight = train(tmp_path)                                    # 2 steps, checkpoints 1 and 2
    assert [os.path.basename(c) for c in checkpoint.checkpoints(tmp_path)] == ["checkpoint-000001", "checkpoint-000002"]
    cut_short(tmp_path / "checkpoint-000002" / "optimizer.pt")
    open(tmp_path / "metrics.jsonl", "a").write('{"step": 3, "lo')  # and a log cut short
    capsys.readouterr()
    resumed = train(tmp_path)
    err = capsys.readouterr().err
    assert f"{tmp_path}/checkpoint-000002/optimizer.pt is cut short or damaged" in err
    assert "; resuming from checkpoint-000001" in err and f"{tmp_path}/metrics.jsonl: line 3 did not read back" in err
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert [r["step"] for r in disk.read_jsonl(tmp_path / "metrics.jsonl")] == [1, 2]

    cut_short(tmp_path / "checkpoint-000002" / "model" / models.STUDENT_WEIGHTS)
    overwrite_with_text(tmp_path / "checkpoint-000001" / "state.json")
    again = train(tmp_path)
    err = capsys.readouterr().err
    assert "; resuming from the start (no earlier checkpoint)" in err
    assert all(torch.equal(straight[k], again[k]) for k in straight)


# --- a full disk -------------------------------------------------------------------------------

def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(run, finished, capsys, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError
    unfinish(run, "DONE", "student")
    save_file = safetensors.torch.save_file

    def full(tensors, filename, *args, **kw):   # what a 3 MB filesystem did: half a file, then this
        save_file(tensors, filename, *args, **kw)
        cut_short(filename)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    before = hashes(run)
    code, _, err = loop(run, capsys)
    assert code == 2 and one_line(err) == (
        f"error: {run}/stage_1/student: no space left on the device to write it; "
        "free space and re-run the same command: finished steps are kept")
    assert hashes(run) == before and not temps(run)
    monkeypatch.setattr(safetensors.torch, "save_file", save_file)   # space freed: the same command ends the run
    assert loop(run, capsys)[0] == 0
    fresh, old = trainable(run / "stage_1" / "student"), trainable(finished / "stage_1" / "student")
    assert all(torch.equal(fresh[k], old[k]) for k in old)


def test_a_full_disk_in_torch_save_and_in_json(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    disk.write_json(target, {"fine": True})
    with pytest.raises(disk.DiskFull, match=f"^{target}: no space left"):
        with disk.atomic_file(target) as tmp:
            open(tmp, "w").write("{half")
            raise OSError(errno.ENOSPC, "No space left on device")
    # torch.save says only "unexpected pos": a failed write with (almost) no space left counts
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda d: types.SimpleNamespace(free=4096))
    with pytest.raises(disk.DiskFull):
        with disk.atomic_dir(tmp_path / "checkpoint-000002"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda d: types.SimpleNamespace(free=2**40))
    with pytest.raises(RuntimeError, match="unexpected pos"):      # the same error with space left: a bug, as it is
        with disk.atomic_dir(tmp_path / "checkpoint-000002"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert disk.read_json(target) == {"fine": True} and os.listdir(tmp_path) == ["state.json"]


def test_temps_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    dead, alive, old = ".tmp-999999999-ab12.json", f".tmp-{os.getppid()}-cd34.json", ".tmp-ef56"
    for name in (dead, alive):
        (tmp_path / name).write_text("{")
    (tmp_path / old).mkdir()                                    # an older version's temp folder
    disk.write_json(tmp_path / "eval.json", {})
    assert sorted(os.listdir(tmp_path)) == sorted([alive, "eval.json"])


def test_a_resumed_run_curates_for_the_same_properties():
    # prune_stage's record holds NaN where the reward measures nothing (the pixel proxy's
    # text_alignment); prune.json, which a resumed run reads instead, holds null.
    nan = float("nan")
    record = {"target_fallback": True, "target_properties": [["dynamic_degree", -0.01]],
              "full_scores": {"visual_quality": 0.5, "temporal_consistency": 0.2, "dynamic_degree": 0.1,
                              "text_alignment": nan, "total": 0.3},
              "pruned_scores": {"visual_quality": 0.6, "temporal_consistency": 0.25, "dynamic_degree": 0.11,
                                "text_alignment": nan, "total": 0.35}}
    resumed = json.loads(json.dumps(disk.json_safe(record)))
    assert vip_loop.curation_targets(record) == vip_loop.curation_targets(resumed) == [
        "dynamic_degree", "temporal_consistency", "visual_quality"]


def test_a_second_writer_of_a_run_folder_is_refused(run, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from infra import disk; disk.hold_lock(sys.argv[1]); "
                               "print('held', flush=True); sys.stdin.read()", str(run)],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    before = hashes(run)
    code, _, err = loop(run, capsys)
    holder.stdin.close()
    holder.wait()
    assert code == 2 and f"{run} is being written by another process that is still running" in one_line(err)
    assert hashes(run) == before
