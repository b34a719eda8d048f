"""vip_loop.py: stages, resume after a kill, torchrun, one-shot, and config refusal."""
import os
import random
import re
import shutil

import pytest

import models
import prune
from infra import disk, run_folder
from infra.cli import UserError
import vip_loop
from conftest import killed_when, run_script
from test_reuse import TINY_LOOP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def table1(run_dir):
    """report.md's Table-1 rows: Full, Stage k Pruned, Stage k <method>."""
    return [r for r in table(run_dir) if r.split("|")[1].strip() == "Full" or re.fullmatch(r"Stage \d+", r.split("|")[1].strip())]


def table(run_dir):
    """report.md's tables but the cost table (whose latency is measured): Table 1, paired, claims."""
    text = open(os.path.join(run_dir, "report.md")).read()
    part = text.split("## Table 1")[1].split("## Cost")[0]        # Table 1, paired differences, claims
    return [line for line in part.splitlines() if line.startswith("| ") and not line.startswith("| Stage | Method")]


@pytest.fixture(scope="module")
def straight(tiny_loop):
    """The run nothing interrupted: the session's tiny loop (conftest.py)."""
    return tiny_loop[0]


def test_two_stages_shrink_the_model_and_report_every_row(straight):
    params = [disk.read_json(os.path.join(straight, "full", "eval.json"))["params"]["prunable"]]
    for k in (1, 2):
        stage = os.path.join(straight, f"stage_{k}")
        prune = disk.read_json(os.path.join(stage, "prune.json"))
        assert len(prune["removed"]) == 2
        pruned = disk.read_json(os.path.join(stage, "eval_pruned.json"))["params"]["prunable"]
        trained = disk.read_json(os.path.join(stage, "eval.json"))["params"]["prunable"]
        assert pruned == trained == params[-1] - prune["removed_parameters"]
        params.append(trained)
        assert os.path.isfile(os.path.join(stage, "DONE"))
        assert os.path.isfile(os.path.join(stage, "student", models.STUDENT_FILE))
    assert params[0] > params[1] > params[2]
    rows = table1(straight)
    assert [r.split("|")[1:3] for r in rows] == [
        [" Full ", " - "], [" Stage 1 ", " Pruned "], [" Stage 1 ", " ReDPO "],
        [" Stage 2 ", " Pruned "], [" Stage 2 ", " ReDPO "]]
    # The table shows the eval.json numbers.
    trained = disk.read_json(os.path.join(straight, "stage_2", "eval.json"))
    assert f"{trained['scores']['total']['mean']:.3f}" == rows[-1].split("|")[7].strip()
    # Stage 2 starts from stage 1's trained student: its removed list extends stage 1's.
    final = models.load("tiny", path=os.path.join(straight, "stage_2", "student"))
    first = disk.read_json(os.path.join(straight, "stage_1", "prune.json"))["removed"]
    assert final.removed[:2] == first and len(final.removed) == 4


def test_prune_py_alone_is_the_loops_first_stage(straight, tmp_path):
    """prune.py, given the loop's own flags (one name a setting; --stages and --pool_prompts are the
    loop's alone), makes the loop's stage 1 number for number: candidates, blocks, targets, pruned row."""
    flags = [f for i, f in enumerate(TINY_LOOP) if not {f, TINY_LOOP[i - 1]} & {"--stages", "--pool_prompts"}]
    assert len(flags) == len(TINY_LOOP) - 4
    prune.main(flags + ["--out", str(tmp_path)])
    for name, measured in (("prune.json", "latency_s"), ("eval_pruned.json", "latency")):
        alone, loop = (disk.read_json(os.path.join(d, name)) for d in (tmp_path, os.path.join(straight, "stage_1")))
        assert alone.pop(measured) and loop.pop(measured)      # timed once each: not the same number
        assert alone == loop, name


def test_killed_in_stage_2_resumes_without_redoing_stage_1(straight, tmp_path, capsys):
    run = tmp_path / "killed"
    # Stage 1 as the straight run made it (the same flags make the same files): the run starts at
    # stage 2, which is what is killed; making stage 1 again here would only repeat the straight run.
    run.mkdir()
    for rel in ("config.json", "full", "teacher_cache", "stage_1"):
        (shutil.copytree if (straight / rel).is_dir() else shutil.copyfile)(straight / rel, run / rel)
    # Killed in a moment of stage 2's training, once it has pruned, curated and begun (not at its first step's end).
    killed_when(run / "stage_2" / "train" / "metrics.jsonl", vip_loop.main, TINY_LOOP + ["--out", str(run)],
                pause=random.Random(0).uniform(0, 0.2))
    assert not (run / "stage_2" / "DONE").exists() and not (run / "report.md").exists()
    stage_1 = {p: os.stat(p).st_mtime_ns for p in (run / "stage_1").rglob("*")}

    vip_loop.main(TINY_LOOP + ["--out", str(run)])      # resumed in-process: it knows only the folder
    assert "stage 1: done, skipped" in capsys.readouterr().out
    assert {p: os.stat(p).st_mtime_ns for p in (run / "stage_1").rglob("*")} == stage_1
    assert (run / "stage_2" / "DONE").exists()
    assert table(run) == table(straight)   # the same report as the uninterrupted run
    for path in ("full/eval.json", "stage_2/eval_pruned.json", "stage_2/eval.json"):
        assert disk.read_json(run / path)["per_video"] == disk.read_json(straight / path)["per_video"]
    assert not [p for p in run.rglob(".tmp-*")]   # the killed writes' temps are gone


def test_torchrun_two_processes_oneshot(torchrun_run):
    """torchrun with two processes, on the one-shot schedule (Table 4's "w/o online": every stage's
    blocks cut at once, one round of training): one test for both keeps the suite within its time;
    the stage-to-stage path is the straight run's, and torchrun's equality with one process is
    checked step by step in test_prune, test_curate and test_redpo (the same torchrun launch,
    conftest.torchrun_run: conftest.torchrun_parts' vip_loop_part)."""
    run = torchrun_run / "vip_loop"
    assert disk.read_json(os.path.join(run, "config.json"))["world"] == 2
    assert sorted(os.listdir(run)).count("stage_1") == 1 and not (run / "stage_2").exists()
    assert len(disk.read_json(run / "stage_1" / "prune.json")["removed"]) == 4
    assert len(table1(run)) == 3


def test_another_config_for_an_existing_run_is_refused(tmp_path):
    disk.write_json(tmp_path / "config.json", {"model": "tiny", "method": "sft"})
    r = run_script("vip_loop.py", *TINY_LOOP, "--out", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "other settings" in r.stderr and "method: 'sft' -> 'redpo'" in r.stderr


def test_stage_plan():
    assert vip_loop.stage_plan(3, 4, oneshot=False) == [4, 4, 4]
    assert vip_loop.stage_plan(3, 4, oneshot=True) == [12]


def test_toy_preset_reads_the_worlds_split():
    from toy import shapes_world
    from infra import prompt_files
    train, held_out = shapes_world.split_prompts()
    preset = vip_loop.PRESETS["toy"]
    assert [p["prompt"] for p in prompt_files.read_prompts(preset["prompts"])] == held_out
    assert [p["prompt"] for p in prompt_files.read_prompts(preset["pool"])] == train
    assert vip_loop.DEFAULT_MODEL == "toy" and preset["reward"] == "shapes"


def test_search_prompts_choose_blocks_and_targets_apart_from_the_eval_set(tmp_path):
    """--search_prompts: the block search and the target properties on a set the pruned row (and every
    verdict) is not computed on; the rule's w_sft logged for a number (the real presets' way)."""
    search = tmp_path / "search.txt"
    search.write_text("a cat sleeping on a sofa\na car driving at night\n")
    run = tmp_path / "run"
    vip_loop.main(TINY_LOOP + ["--stages", "1", "--search_prompts", str(search), "--out", str(run)])   # in-process
    record = disk.read_json(run / "stage_1" / "prune.json")
    assert record["eval"]["prompts"] == ["a cat sleeping on a sofa", "a car driving at night"]
    # The search's own seeds: no search video starts from an eval video's x_T.
    assert record["eval"]["seeds"] == [1_000_000, 1_000_001]
    full_search = disk.read_json(run / "full" / "eval_search.json")
    assert [v["prompt"] for v in full_search["per_video"]] == record["eval"]["prompts"]
    row = disk.read_json(run / "stage_1" / "eval_pruned.json")
    full = disk.read_json(run / "full" / "eval.json")
    assert [v["prompt"] for v in row["per_video"]] == [v["prompt"] for v in full["per_video"]]
    assert not {v["seed"] for v in full_search["per_video"]} & {v["seed"] for v in full["per_video"]}
    # A run folder whose search videos have other seeds (made by other code) is not resumed.
    for v in full_search["per_video"]:
        v["seed"] -= 1_000_000
    disk.write_json(run / "full" / "eval_search.json", full_search)
    config = disk.read_json(run / "config.json")
    with pytest.raises(UserError, match="generated with seeds 0..1, not the block search's 1000000..1000001"):
        run_folder.check_config(str(run), dict(config, search_prompts=str(search)))
    assert not set(record["eval"]["prompts"]) & {v["prompt"] for v in row["per_video"]}
    # The targets: the drops of the pruned model on the search set against M0 on the search set.
    assert record["full_scores"]["total"] == pytest.approx(full_search["scores"]["total"]["mean"])
    import prune
    targets = prune.target_properties(prune.flat_means(record["pruned_scores"]), prune.flat_means(record["full_scores"]))
    assert record["target_properties"] == [list(t) for t in targets]
    done = disk.read_json(run / "stage_1" / "DONE")
    assert done["w_sft"]["w_sft"] == 1e4 and done["w_sft"]["rule"]["w_sft"] > 0


def test_w_sft_auto_is_in_the_help_and_the_toy_preset():
    assert vip_loop.PRESETS["toy"]["w_sft"] == "auto"
    assert vip_loop.PRESETS["animatediff"]["w_sft"] == 1e4 and vip_loop.PRESETS["videocrafter2"]["w_sft"] == 1e6
    r = run_script("vip_loop.py", "--help")
    assert "auto" in r.stdout and "--search_prompts" in r.stdout


def test_toy_search_prompts_are_training_prompts_apart_from_the_eval_set():
    from toy import shapes_world
    from infra import prompt_files
    train, held_out = shapes_world.split_prompts()
    search = [p["prompt"] for p in prompt_files.read_prompts(vip_loop.PRESETS["toy"]["search_prompts"])]
    assert len(search) == 18 and set(search) <= set(train) and not set(search) & set(held_out)
