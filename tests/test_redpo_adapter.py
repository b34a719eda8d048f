"""redpo.py's CLI loads the teacher with --adapter and refuses a student cut from another model;
prune.py and curate.py take --adapter and --reward_path as well. Tiny
AnimateDiff checkpoints in the hub layout and a tiny VideoScore; nothing is downloaded (without
--adapter the teacher would reach for the hub adapter and fail)."""
import json
import os
import shutil

import pytest
from infra.cli import UserError
from infra.disk import read_json

import torch

import curate
import models
import prune
import redpo
import rewards
from conftest import run_script
import tiny_checkpoints


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """base/ + adapter/ (the tiny model in the hub layout), a copy of the adapter elsewhere, a
    student pruned from base + adapter, and two pairs of latents."""
    d = tmp_path_factory.mktemp("hub")
    base, adapter = tiny_checkpoints.save_tiny_hub_layout(str(d))
    shutil.copytree(adapter, d / "other_adapter")
    student = models.load("animatediff", path=base, adapter=adapter, device="cpu")
    student.remove(list(student.blocks())[:1])
    student.save(str(d / "student"))
    os.makedirs(d / "pairs" / "latents")
    g = torch.Generator().manual_seed(0)
    with open(d / "pairs" / "pairs.jsonl", "w") as f:
        for i in range(2):
            for side in "wl":
                torch.save(torch.randn(4, 8, 16, 16, generator=g), d / "pairs" / "latents" / f"{side}_{i}.pt")
            f.write(json.dumps({"prompt": f"a red car {i}", "seed": i, "property": "dynamic_degree",
                                "winner_scores": {}, "loser_scores": {},
                                "winner": f"latents/w_{i}.pt", "loser": f"latents/l_{i}.pt"}) + "\n")
    return d, base, adapter


def redpo_args(d, base, adapter, out):
    return ["--model", "animatediff", "--path", base, "--adapter", adapter, "--student", str(d / "student"),
            "--pairs", str(d / "pairs"), "--out", str(d / out), "--max_steps", "1", "--batch", "2",
            "--grad_accum", "1", "--no-gradient_checkpointing", "--lr", "1e-3"]


def redpo_cli(d, base, adapter, out):
    return run_script("redpo.py", *redpo_args(d, base, adapter, out))


def test_teacher_loads_the_local_adapter(hub):
    d, base, adapter = hub
    redpo.main(redpo_args(d, base, adapter, "run"))      # in-process: the refusal below runs the script
    assert json.loads((d / "run" / "config.json").read_text())["adapter"] == adapter
    saved = read_json(d / "run" / "student" / models.STUDENT_FILE)
    assert saved["source"] == {"path": os.path.abspath(base), "adapter": os.path.abspath(adapter)}


def test_a_student_from_another_adapter_is_refused(hub):
    d, base, _ = hub
    proc = redpo_cli(d, base, str(d / "other_adapter"), "refused")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]   # (and loading bars)
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr
    assert "was pruned from" in errors[0] and "other_adapter" in errors[0] and "--adapter" in errors[0]
    assert not (d / "refused").exists()


def test_check_student_source_compares_with_the_teacher(hub):
    d, base, adapter = hub
    redpo.check_student_source(str(d / "student"), models.load("animatediff", path=base, adapter=adapter))
    with pytest.raises(UserError, match="the teacher is the built-in model"):
        redpo.check_student_source(str(d / "student"), models.load("tiny"))


def test_prune_and_curate_take_the_local_adapter_and_reward_path(hub, tmp_path, monkeypatch):
    """In-process, at tiny sizes (the animatediff defaults are 16 frames at 512x512): every model
    prune.py and curate.py load gets --adapter, the reward gets --reward_path."""
    d, base, adapter = hub
    monkeypatch.setitem(models.DEFAULTS, "animatediff", dict(models.DEFAULTS["tiny"]))
    loads, reward_kw = [], []
    load, load_reward = models.load, rewards.load_reward

    def spy_load(name, path=None, adapter=None, **kw):
        loads.append((path, adapter))
        return load(name, path=path, adapter=adapter, **kw)

    def spy_reward(name, **kw):
        reward_kw.append(kw.get("path"))
        return load_reward(name, **kw)

    monkeypatch.setattr(models, "load", spy_load)
    monkeypatch.setattr(rewards, "load_reward", spy_reward)      # prune's and curate's, by rewards.load_reward_beside
    vs = tiny_checkpoints.save_tiny_videoscore(str(tmp_path / "vs"))
    local = ["--model", "animatediff", "--path", base, "--adapter", adapter, "--reward", "videoscore",
             "--reward_path", vs, "--steps", "2"]
    stage = tmp_path / "stage_1"
    prune.main(local + ["--eval_prompts", "1", "--blocks", "1", "--out", str(stage)])
    assert (stage / "prune.json").is_file() and loads == [(base, adapter)] and reward_kw == [vs]
    pool = tmp_path / "pool.txt"
    pool.write_text("A red car driving fast on a mountain road at night\n")
    try:
        curate.main(local + ["--student", str(stage / "pruned"), "--pool", str(pool), "--tau", "-100",
                             "--property", "dynamic_degree,visual_quality,temporal_consistency",
                             "--out", str(stage / "pairs")])
    except UserError as e:   # random weights: the teacher may win on no prompt; then nothing is written
        assert "no pair survived" in str(e) and not (stage / "pairs").exists()
    else:
        config = json.loads((stage / "pairs" / "config.json").read_text())
        assert (config["adapter"], config["reward_path"]) == (adapter, vs)
    assert loads[1:] == [(str(stage / "pruned"), None), (base, adapter)] and reward_kw == [vs, vs]   # the student first: a LoRA one brings its teacher
    saved = read_json(stage / "pruned" / models.STUDENT_FILE)
    assert saved["source"] == {"path": os.path.abspath(base), "adapter": os.path.abspath(adapter)}
