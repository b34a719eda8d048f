"""AnimateDiff's Table-1 schedule is reachable: --blocks per stage, the preset,
and resuming runs whose config.json holds one number."""
import itertools
import os
import subprocess
from collections import Counter

import pytest
from infra import run_folder
from infra.cli import UserError
from infra.disk import write_json

import torch

import vip_loop
from conftest import run_script
from models import animatediff

TABLE_1 = [0.453, 0.309, 0.219, 0.147]      # Table 1, AnimateDiff, Param (B): full, stage 1, 2, 3


@pytest.fixture(scope="module")
def module_sizes():
    """Parameters of each of the real adapter's motion modules, built on the meta device."""
    with torch.device("meta"):
        unet = animatediff.build_animatediff_unet()
    return [sum(p.numel() for p in unet.get_submodule(q).parameters()) for q in animatediff.motion_block_paths(unet)]


def schedules(sizes, plan, targets):
    """Every way to remove plan[k] modules in stage k (nested: a stage removes from what is left)
    so that the remaining parameters, in billions rounded to 3 places, are targets[1:]. Modules of
    one size are interchangeable, so a stage is a Counter {size: how many}. Returns a list of
    [Counter per stage]."""
    found = []

    def search(left, k, done):
        if k == len(plan):
            found.append(done)
            return
        for pick in set(itertools.combinations(sorted(left.elements()), plan[k])):
            removed = Counter(pick)
            remaining = left - removed
            if round(sum(s * n for s, n in remaining.items()) / 1e9, 3) == targets[k + 1]:
                search(remaining, k + 1, done + [removed])

    assert round(sum(sizes) / 1e9, 3) == targets[0]
    search(Counter(sizes), 0, [])
    return found


def test_the_adapter_has_21_modules_of_three_sizes(module_sizes):
    assert Counter(module_sizes) == {36_071_680: 11, 9_024_640: 5, 2_259_520: 5}
    assert sum(module_sizes) == 453_209_280


def test_preset_reaches_table_1_and_four_per_stage_does_not(module_sizes):
    large, medium = 36_071_680, 9_024_640
    preset = vip_loop.PRESETS["animatediff"]
    plan = vip_loop.stage_plan(preset["stages"], preset["blocks"], oneshot=False)
    assert plan == [4, 4, 2]
    found = schedules(module_sizes, plan, TABLE_1)
    assert [Counter({large: 4}), Counter({large: 2, medium: 2}), Counter({large: 2})] in found
    # Sec. 4.1's "4 blocks per stage": stages 1 and 2 can match, stage 3 (12 modules) never can.
    assert schedules(module_sizes, [4, 4], TABLE_1[:3])
    assert schedules(module_sizes, [4, 4, 4], TABLE_1) == []
    assert schedules(module_sizes, [12], [TABLE_1[0], TABLE_1[3]]) == []


def resolved(*argv):
    return vip_loop.resolve(vip_loop.parse_args(list(argv)), world=1)


def test_blocks_take_one_count_per_stage():
    assert resolved("--model", "animatediff")["blocks"] == [4, 4, 2]
    assert resolved("--model", "animatediff", "--blocks", "4")["blocks"] == [4, 4, 4]
    assert resolved("--model", "tiny", "--stages", "3", "--blocks", "2", "2", "1")["blocks"] == [2, 2, 1]
    assert resolved("--model", "tiny", "--stages", "3")["blocks"] == [2, 2, 2]          # the preset's 2, every stage
    assert vip_loop.stage_plan(3, [2, 2, 1], oneshot=True) == [5]
    assert vip_loop.stage_plan(3, 4, oneshot=False) == [4, 4, 4]
    with pytest.raises(UserError, match="2 counts .* for 3 stages"):
        resolved("--model", "tiny", "--stages", "3", "--blocks", "2", "1")
    with pytest.raises(UserError, match="pass --blocks too"):
        resolved("--model", "animatediff", "--stages", "2")
    with pytest.raises(UserError, match="at least 1"):
        resolved("--model", "tiny", "--blocks", "0")


def test_gradient_checkpointing_follows_the_preset_and_either_flag_overrides_it():
    assert resolved("--model", "wan")["gradient_checkpointing"] is True          # the presets that fit 80 GB with it
    assert resolved("--model", "wan", "--no-gradient_checkpointing")["gradient_checkpointing"] is False
    assert resolved("--model", "toy")["gradient_checkpointing"] is False
    assert resolved("--model", "toy", "--gradient_checkpointing")["gradient_checkpointing"] is True


def test_wrong_count_is_one_line_on_the_command_line(tmp_path):
    r = run_script("vip_loop.py", "--model", "tiny", "--reward", "pixel", "--stages", "3", "--blocks", "2", "1",
                   "--out", str(tmp_path / "run"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr
    assert "--blocks has 2 counts (2 1) for 3 stages" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_run_resumes_with_the_same_settings_or_is_refused_clearly(tmp_path):
    cfg = resolved("--model", "tiny", "--reward", "pixel", "--stages", "2", "--blocks", "2", "--out", str(tmp_path))
    write_json(tmp_path / "config.json", cfg)
    run_folder.check_config(str(tmp_path), cfg)         # the same run: it resumes
    other = resolved("--model", "tiny", "--reward", "pixel", "--stages", "2", "--blocks", "2", "1",
                     "--out", str(tmp_path))
    with pytest.raises(UserError, match=r"blocks: \[2, 2\] -> \[2, 1\]"):
        run_folder.check_config(str(tmp_path), other)
    fp32 = resolved("--model", "tiny", "--reward", "pixel", "--stages", "2", "--blocks", "2", "--reward_dtype", "fp32",
                    "--out", str(tmp_path))
    with pytest.raises(UserError, match="reward_dtype: 'bf16' -> 'fp32'"):
        run_folder.check_config(str(tmp_path), fp32)


def test_a_run_resumes_from_another_clone_with_the_same_prompt_files(tmp_path):
    """The toy preset's prompt files are absolute paths into the checkout; another clone (or a moved
    one) holds the same files: the run resumes. A prompt file with other prompts is refused."""
    cfg = resolved("--out", str(tmp_path / "run"))
    clone = tmp_path / "clone"
    clone.mkdir()
    moved = dict(cfg)
    for key in ("prompts", "pool"):
        (clone / os.path.basename(cfg[key])).write_bytes(open(cfg[key], "rb").read())
        moved[key] = str(clone / os.path.basename(cfg[key]))
    write_json(tmp_path / "run" / "config.json", moved)
    run_folder.check_config(str(tmp_path / "run"), cfg)
    with open(moved["prompts"], "a") as f:
        f.write("a red circle moving up\n")
    with pytest.raises(UserError, match="prompts: "):
        run_folder.check_config(str(tmp_path / "run"), cfg)


def test_config_json_holds_relative_paths_and_the_commit_and_still_resumes(tmp_path):
    """with_provenance: paths inside the repository relative to its root, the code's commit; a run
    folder written so resumes with the absolute-path config of today, and an old one (absolute
    paths, no commit) resumes with it too."""
    cfg = resolved("--out", os.path.join(run_folder.ROOT, "runs", "x"))
    written = run_folder.with_provenance(cfg)
    assert written["prompts"] == os.path.join("toy", "eval_prompts.txt")
    assert written["search_prompts"] == os.path.join("toy", "search_prompts.txt")
    assert written["out"] == os.path.join("runs", "x") and written["model"] == cfg["model"]
    commit = subprocess.run(["git", "-C", run_folder.ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.returncode == 0:
        assert written["code"]["commit"] == commit.stdout.strip()
        assert isinstance(written["code"]["uncommitted_changes"], bool)
    assert run_folder.relative("/elsewhere/x.txt") == "/elsewhere/x.txt" and run_folder.relative(None) is None
    write_json(tmp_path / "config.json", written)
    run_folder.check_config(str(tmp_path), cfg)                     # relative on disk, absolute in memory
    write_json(tmp_path / "config.json", cfg)
    run_folder.check_config(str(tmp_path), dict(written, code={"commit": "0" * 40}))   # "code" does not count


def test_no_git_records_null(tmp_path):
    assert run_folder.code_version(str(tmp_path)) == {"commit": None, "uncommitted_changes": None}
