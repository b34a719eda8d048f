"""The layout (issue 15): which file may import which, file sizes and docstrings, one flag
convention, and one set of defaults that runs offline.

The import rules, read from each file's `import` statements (also those inside functions):
runtime.py imports no other file of the project; the models package and rewards.py import no
script and not each other; no two files import each other, directly or around a longer loop.
"""
import argparse
import ast
import importlib
import os
import subprocess
import sys

import pytest

import curate
import defaults
import evaluate
import models
import prune
import vip_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"prune", "curate", "redpo", "vip_loop", "evaluate"}
MAX_LINES = 520


def python_files():
    """Every .py file of the repository (not the virtual environment or run outputs), relative paths."""
    out = []
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = [x for x in dirs if not x.startswith(".") and x not in ("__pycache__", "runs", "samples")]
        out += [os.path.relpath(os.path.join(d, f), ROOT) for f in files if f.endswith(".py")]
    return sorted(out)


def module_name(path):
    """'models/__init__.py' -> 'models', 'toy/shapes.py' -> 'toy.shapes'."""
    parts = path[:-3].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


PROJECT = {module_name(p): p for p in python_files() if not p.startswith("tests" + os.sep)}


def project_imports(path):
    """The project modules a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(open(os.path.join(ROOT, path)).read())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]   # a module, or a name in one
        else:
            continue
        for name in names:
            while name and name not in PROJECT:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found - {module_name(path)}


GRAPH = {m: project_imports(p) for m, p in PROJECT.items()}


def test_runtime_imports_no_project_module():
    assert GRAPH["runtime"] == set()


def test_models_and_rewards_import_no_script_and_not_each_other():
    family = [m for m in GRAPH if m == "models" or m.startswith("models.")]
    assert len(family) >= 4
    for m in family:
        assert not GRAPH[m] & (SCRIPTS | {"rewards"}), (m, GRAPH[m])
    assert not GRAPH["rewards"] & (SCRIPTS | set(family)), GRAPH["rewards"]
    for m in ("defaults", "prompt_files", "parallel", "toy.shapes_world", "toy.gmm_model"):
        assert GRAPH[m] <= {"runtime"}, (m, GRAPH[m])


def test_no_import_cycles():
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", " -> ".join(path + [m])
        state[m] = "open"
        for n in sorted(GRAPH[m]):
            visit(n, path + [m])
        state[m] = "done"

    for m in sorted(GRAPH):
        visit(m, [])


def test_the_registry_names_modules_below_the_scripts():
    for name, target in models.LOADERS.items():
        module, function = target.split(":")
        assert module in PROJECT and module not in SCRIPTS, (name, target)
        assert callable(getattr(importlib.import_module(module), function)), (name, target)


def test_every_file_is_short_and_opens_with_a_docstring():
    for path in python_files():
        text = open(os.path.join(ROOT, path)).read()
        assert text.count("\n") <= MAX_LINES, f"{path}: {text.count(chr(10))} lines"
        if text.strip():
            assert ast.get_docstring(ast.parse(text)), f"{path} has no docstring"


# --- one flag convention, one set of defaults ---------------------------------------------------

CLIS = {   # module: the fewest arguments its parser accepts
    "prune": ["--out", "x"], "curate": ["--student", "s", "--property", "dynamic_degree", "--out", "x"],
    "evaluate": [], "redpo": ["--pairs", "p", "--out", "x"], "vip_loop": [], "models.__main__": [],
    "toy.shapes": ["evaluate"], "toy.gmm": ["--out", "x"],
}


def test_every_flag_is_spelled_with_underscores_and_dashes_still_work(monkeypatch):
    added = []
    original = argparse._ActionsContainer.add_argument

    def record(self, *names, **kw):
        added.append(names)
        return original(self, *names, **kw)

    monkeypatch.setattr(argparse._ActionsContainer, "add_argument", record)
    for module, args in CLIS.items():
        importlib.import_module(module).parse_args(args)
    flags = [names for names in added if names[0].startswith("--") and names[0] != "--help"]
    assert len(flags) > 60
    for names in flags:
        assert "-" not in names[0][2:], f"{names[0]}: the first spelling takes underscores"
        assert all(n == names[0].replace("_", "-") for n in names[1:]), names
    assert (prune.parse_args(["--num-prompts", "3", "--batch-size", "2", "--out", "x"])
            == prune.parse_args(["--num_prompts", "3", "--batch_size", "2", "--out", "x"]))
    assert (curate.parse_args(CLIS["curate"] + ["--max-prompts", "5", "--num-seeds", "2"])
            == curate.parse_args(CLIS["curate"] + ["--max_prompts", "5", "--num_seeds", "2"]))
    assert evaluate.parse_args(["--reward-path", "d"]).reward_path == "d"


def test_every_cli_defaults_to_the_toy_world_and_the_reward_follows_the_model():
    for module, args in CLIS.items():
        if not module.startswith("toy."):
            assert importlib.import_module(module).parse_args(args).model == defaults.DEFAULT_MODEL == "toy"
    assert list(defaults.RUN_DEFAULTS) == list(models.LOADERS) and set(vip_loop.PRESETS) == set(models.LOADERS)
    expected = {"toy": "shapes", "tiny": "pixel", "tiny-videocrafter2": "pixel", "animatediff": "videoscore",
                "videocrafter2": "videoscore"}
    for name, reward in expected.items():
        assert defaults.for_model(name)["reward"] == vip_loop.PRESETS[name]["reward"] == reward


@pytest.mark.parametrize("model", [[], ["--model", "tiny"]], ids=["toy", "tiny"])
def test_prune_runs_offline_with_the_defaults(model, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    r = subprocess.run([sys.executable, "prune.py", *model, "--num_prompts", "2", "--blocks", "1", "--steps", "2",
                        "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "prune.json").is_file() and (tmp_path / "pruned").is_dir()
    assert f"reward {'pixel' if model else 'shapes'}" in r.stdout
