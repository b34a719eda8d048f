"""infra/cli.py and the --out check: bad input and Ctrl-C are one line each, under torchrun said once;
an --out that cannot be a folder is refused before any work, by every script that writes one."""
import os
import signal
import time

import pytest

from conftest import ROOT, Script
from infra import cli, disk
from infra.cli import UserError

# The toy loop at its smallest: one stage of one block, 2 eval videos, 2 sampler steps.
SHORT_TOY = ["--stages", "1", "--blocks", "1", "--eval_prompts", "2", "--eval_seeds", "1", "--search_prompts", "none",
             "--pool_prompts", "4", "--steps", "2"]


def test_run_cli_turns_ctrl_c_into_one_line_and_status_130(capsys):
    def interrupted():
        raise KeyboardInterrupt
    with pytest.raises(SystemExit) as e:
        cli.run_cli(interrupted)
    assert e.value.code == 130
    assert capsys.readouterr().err == cli.INTERRUPTED + "\n"


def test_ctrl_c_in_a_running_loop_is_one_line_and_leaves_no_half_written_file(tmp_path):
    """SIGINT while the block search runs: one line, status 130, no temp left; the same command then finishes."""
    out = tmp_path / "run"
    proc = Script(["vip_loop.py", *SHORT_TOY, "--out", str(out)])
    while not (out / "full" / "eval.json").exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)                                    # inside the block search
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.splitlines()[-1] == cli.INTERRUPTED and "Traceback" not in err
    assert not list(out.rglob(".tmp-*")) and not (out / "stage_1" / "prune.json").exists()


def test_a_user_error_under_torchrun_is_said_once(torchrun_run):
    """Every rank refuses an --out that holds a run with other settings; rank 0 alone says so (the
    suite's torchrun launch, conftest.torchrun_parts: refused_part)."""
    stderr = (torchrun_run / "stderr.txt").read_text()
    said = [line for line in stderr.splitlines() if "other settings" in line]
    assert len(said) == 1 and said[0].startswith("error: ") and "method: 'sft' -> 'redpo'" in said[0], stderr[-3000:]
    assert not (torchrun_run / "refused" / "full").exists()


def test_stages_alone_suggests_a_blocks_value():
    import vip_loop
    with pytest.raises(UserError, match=r"with --stages 1 pass --blocks too, e.g. --blocks 2 \("):
        vip_loop.resolve(vip_loop.parse_args(["--stages", "1"]), 1)
    with pytest.raises(UserError, match=r"e.g. --blocks 2 2 1 1 \("):
        vip_loop.resolve(vip_loop.parse_args(["--stages", "4"]), 1)


def test_check_out(tmp_path):
    (tmp_path / "file").write_text("x")
    for bad, why in ((tmp_path / "file" / "stage_1", "is a file"), ("/proc/nope/run", "nothing can be written in /proc")):
        with pytest.raises(UserError, match=why):
            disk.check_out(str(bad))
    disk.check_out(str(tmp_path / "new" / "deeper"))        # made later by the script: nothing made now
    assert sorted(os.listdir(tmp_path)) == ["file"]
    disk.check_out(None)


SCRIPTS = {   # script: its arguments but --out (enough to pass its own checks)
    "prune.py": ["--model", "tiny", "--reward", "pixel"],
    "curate.py": ["--model", "tiny", "--student", "x", "--property", "visual_quality"],
    "redpo.py": ["--model", "tiny", "--pairs", "x"],
    "evaluate.py": ["--model", "tiny", "--reward", "pixel"],
    "vip_loop.py": ["--model", "tiny", "--reward", "pixel"],
    "models": ["--model", "tiny"],
}


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("out", ["README.md/stage_1", "/proc/nope/run"])
def test_every_script_refuses_a_bad_out_before_any_work(script, out, monkeypatch):
    """Each script's main, in this process, with the model loader made to fail loudly: the --out
    error comes first (a script that loaded its model first would raise the loader's error)."""
    import importlib
    import models
    main = importlib.import_module("models.__main__" if script == "models" else script[:-3]).main

    def work_began(*a, **k):
        raise AssertionError(f"{script} began work before checking --out")
    monkeypatch.setattr(models, "load", work_began)
    monkeypatch.chdir(ROOT)
    with pytest.raises(UserError, match="--out "):
        main([*SCRIPTS[script], "--out", out])
