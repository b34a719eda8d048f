"""redpo.py's CLI loads the teacher with --adapter and refuses a student cut from another model
(issue 14, point 4). Tiny AnimateDiff checkpoints in the hub layout; nothing is downloaded (without
--adapter the teacher would reach for the hub adapter and fail)."""
import json
import os
import shutil

import pytest
import torch

import models
import redpo
from conftest import run_script
from models.animatediff import save_tiny_hub_layout
from runtime import UserError, read_json


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """base/ + adapter/ (the tiny model in the hub layout), a copy of the adapter elsewhere, a
    student pruned from base + adapter, and two pairs of latents."""
    d = tmp_path_factory.mktemp("hub")
    base, adapter = save_tiny_hub_layout(str(d))
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


def redpo_cli(d, base, adapter, out):
    return run_script("redpo.py", "--model", "animatediff", "--teacher", base, "--adapter", adapter,
                      "--student", str(d / "student"), "--pairs", str(d / "pairs"), "--out", str(d / out),
                      "--max_steps", "1", "--batch", "2", "--lr", "1e-3")


def test_teacher_loads_the_local_adapter(hub):
    d, base, adapter = hub
    proc = redpo_cli(d, base, adapter, "run")
    assert proc.returncode == 0, proc.stderr[-2000:]
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
