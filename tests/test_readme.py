"""README.md, read as a newcomer reads it: every command of its code blocks, in the order written,
in a fresh folder beside the code (every top-level entry linked, no runs/ and no samples/). Each
runs with the README's own flags; a long one gets a few flags more that shrink it (SHORTER: one
stage of one block, two eval videos, two sampler steps) and nothing else: a python command as its
script's __main__ in the test's process, a torchrun command in ranks that torch's launcher forks from
it (one import of torch for the whole walk). What cannot run here is
named with the reason (SKIP: installs, downloads, a GPU's real models); a command this file does
not know fails the test, so that a new README command is walked too."""
import os
import re
import shlex
import sys

import pytest

from conftest import ROOT, Forked, run_as_main, torchrun_forked
from infra import disk

SHORT_LOOP = ["--stages", "1", "--blocks", "1", "--eval_prompts", "2", "--eval_seeds", "1", "--pool_prompts", "4",
              "--steps", "2", "--search_prompts", "none"]       # the toy's block search on the 2 eval videos
SHORTER = {   # the script as the README calls it -> the flags added to shorten it
    "python vip_loop.py": SHORT_LOOP,
    "torchrun vip_loop.py": SHORT_LOOP,
    "python -m models": ["--steps", "2"],
    "python prune.py": ["--eval_prompts", "2", "--steps", "2", "--search_prompts", "none"],
    "python evaluate.py": [],
    "python toy/compare.py": ["--list"],                                      # the plan's queue, nothing run
    "python toy/capacity.py": ["--list"],                                     # the capacity curve's queue
    "python toy/confirm.py": ["--list"],                                      # the confirmation's queue
    "python toy/gmm.py": ["--seeds", "0", "--teacher_steps", "50", "--distil_steps", "10"],
}
SKIP = [      # (what the command holds, why the walk does not run it)
    (("-m", "venv"), "makes the environment the walk runs in"),
    ((".venv/bin/activate",), "activates that environment"),
    (("pip",), "installs packages (.ci/run installs them on a fresh clone)"),
    (("-m", "pytest"), "the test suite itself"),
    (("hf", "download"), "downloads a real model's weights"),
    (("scripts/vbench_env.sh",), "installs VBench's own environment"),
    (("--model", "animatediff"), "a real model: its hub weights and a GPU"),
    (("--model", "videocrafter2"), "a real model: its weights and a GPU"),
    (("--model", "wan"), "a real model: its hub weights and a GPU"),
    (("--vbench_results",), "needs a VBench results file"),
    (("runs/animatediff-redpo",), "reads the AnimateDiff runs above"),
    (("runs/study",), "the study made from the AnimateDiff runs above"),
    (("analysis/capacity.py",), "rewrites docs/shapes/capacity from the shipped runs (tests/test_capacity_analysis.py "
                                "checks it byte for byte)"),
    (("scripts/gpu_lora_check.sh",), "a GPU and AnimateDiff's real weights"),
    (("--llm",), "loads an LLM (SmolLM2: ~1 min on 2 cores; tests/test_filter.py runs it)"),
]


def readme_commands():
    """Every command of README.md's bash blocks, in order: continuation lines joined, comments
    dropped, `a && b` as two commands. [(line, tokens)]."""
    commands, block, in_bash = [], [], False
    for line in open(os.path.join(ROOT, "README.md")):
        line = line.rstrip("\n")
        if line.startswith("```"):
            in_bash = line == "```bash" and not in_bash
            continue
        if in_bash:
            block.append(line)
    text = "\n".join(block).replace("\\\n", " ")
    for line in text.splitlines():
        tokens = shlex.split(line, comments=True)
        while tokens:
            part = tokens[:tokens.index("&&")] if "&&" in tokens else tokens
            tokens = tokens[len(part) + 1:]
            commands.append((" ".join(part), part))
    return commands


def has(tokens, words):
    return any(tokens[i:i + len(words)] == list(words) for i in range(len(tokens)))


def how_to_run(tokens):
    """(the SHORTER key, None) for a command the walk runs, (None, why) for one it skips."""
    for words, why in SKIP:
        if has(tokens, words) or (len(words) == 1 and any(t.endswith(words[0]) for t in tokens)):
            return None, why
    if tokens[0] == "torchrun":
        return f"torchrun {next(t for t in tokens if t.endswith('.py'))}", None
    return " ".join(tokens[:3] if tokens[1] == "-m" else tokens[:2]), None


def test_every_readme_command_is_walked_or_skipped_for_a_reason():
    known = set(SHORTER)
    unknown = [line for line, tokens in readme_commands() if how_to_run(tokens)[0] not in known | {None}]
    assert not unknown, f"README commands tests/test_readme.py does not know: {unknown}; add them to SHORTER or SKIP"


def test_the_readme_in_order(tmp_path, capsys, monkeypatch):
    """Every runnable README command, in order, in a fresh folder; each must succeed."""
    for name in os.listdir(ROOT):
        if name not in ("runs", "samples", ".git") and not name.startswith("."):
            (tmp_path / name).symlink_to(os.path.join(ROOT, name))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")         # offline, as the defaults must run: toy and tiny need no hub
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    walked = []
    for line, tokens in readme_commands():
        key, _ = how_to_run(tokens)
        if key is None:
            continue
        args = tokens + SHORTER[key]
        if tokens[0] == "torchrun":       # torchrun's launch, its ranks forked from this process
            said = launch_here(args, line)
        else:                             # in this process: one import of torch for the whole walk
            said = run_here(args, line, capsys, monkeypatch)
        walked.append((line, said))
        if key.startswith(("python vip_loop.py", "torchrun")):
            assert "curation kept" in said or "done, skipped" in said, f"{line}: {said[-2000:]}"
    # The first loop says how many pairs curation kept: the pairs it wrote.
    said = next(said for line, said in walked if line == "python vip_loop.py")
    kept = int(re.search(r"stage 1: curation kept (\d+) pairs of \d+ prompt/seed items", said).group(1))
    with open(tmp_path / "runs" / "toy-redpo" / "stage_1" / "pairs" / "pairs.jsonl") as f:
        assert kept == sum(1 for line in f if line.strip()) > 0
    # prune.py with the toy's defaults: the eval set's prompt i at seed i (j = 0), the toy's own reward.
    said = next(said for line, said in walked if line == "python prune.py")
    assert disk.read_json(tmp_path / "runs" / "toy-prune" / "prune.json")["eval"]["seeds"] == [0, 1] and "reward shapes" in said
    assert len(walked) >= 9 and (tmp_path / "runs" / "toy-redpo" / "report.md").is_file()
    assert (tmp_path / "runs" / "toy-redpo-2proc" / "report.md").is_file() and (tmp_path / "runs" / "report.md").is_file()


def launch_here(args, line):
    """`torchrun FLAGS SCRIPT ARGS` as torchrun launches it (conftest.torchrun_forked: its parser, launch
    config, agent and each rank's environment), each rank running SCRIPT as its __main__ from this
    folder, forked from this process as the python commands run in it; returns what the ranks printed."""
    at = next(i for i, t in enumerate(args) if t.endswith(".py"))
    launch = Forked(lambda: torchrun_forked(args[1:at], run_as_main, args[at:], os.getcwd()))
    out, err = launch.communicate(600)
    assert launch.returncode == 0, f"{line}: {err[-3000:]}"
    return out


def run_here(args, line, capsys, monkeypatch):
    """`python SCRIPT ARGS` / `python -m MODULE ARGS` as its __main__ from this folder, here
    (conftest.run_as_main, as each torchrun rank runs it); returns what it printed."""
    monkeypatch.setattr(sys, "argv", sys.argv[:])      # run_as_main sets both; restored after the walk
    monkeypatch.setattr(sys, "path", sys.path[:])
    capsys.readouterr()
    try:
        run_as_main(args[1:], os.getcwd())
    except SystemExit as e:
        if e.code not in (0, None):
            pytest.fail(f"{line}: exit status {e.code}: {capsys.readouterr().err[-2000:]}")
    return capsys.readouterr().out
