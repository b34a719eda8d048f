"""The layout: which file may import which, file sizes and docstrings, one spelling per flag with
--help that says each default, and one set of defaults that runs offline.

The import rules, read from each file's `import` statements (also those inside functions):
runtime.py and dimensions.py import no other file of the project; the models package and rewards.py
import no script and not each other; report.py loads no reward or model; no two files import each
other, directly or around a longer loop.
"""
import argparse
import ast
import contextlib
import importlib
import io
import os
import subprocess
import sys

import pytest

import defaults
import models
import prune
import runtime
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
        assert GRAPH[m] <= {"runtime", "dimensions"}, (m, GRAPH[m])


def test_the_report_loads_no_reward_or_model():
    assert GRAPH["dimensions"] == set()
    assert not GRAPH["report"] & {"rewards", "models"}, GRAPH["report"]


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
    "toy.shapes": ["evaluate"], "toy.gmm": ["--out", "x"], "vbench_eval": [],
    "analysis.user_study": ["score", "--study", "x"],
}
MAIN_ONLY = ["toy.compare"]   # CLIs that parse inside main(): read through --help


def every_flag(monkeypatch):
    """[(option strings, the argparse action)] of every flag of every CLI, subcommands included."""
    added = []
    original = argparse._ActionsContainer.add_argument

    def record(self, *names, **kw):
        action = original(self, *names, **kw)
        added.append((names, action))
        return action

    monkeypatch.setattr(argparse._ActionsContainer, "add_argument", record)
    for module, args in CLIS.items():
        importlib.import_module(module).parse_args(args)
    for module in MAIN_ONLY:
        with pytest.raises(SystemExit), contextlib.redirect_stdout(io.StringIO()):
            importlib.import_module(module).main(["--help"])
    return [(names, a) for names, a in added if names[0].startswith("--") and names[0] != "--help"]


def test_every_flag_has_one_spelling_with_underscores(monkeypatch):
    flags = every_flag(monkeypatch)
    assert len(flags) > 80
    for names, _ in flags:
        assert len(names) == 1 and "-" not in names[0][2:], f"{names}: one spelling, with underscores"
    with pytest.raises(SystemExit):                     # the dashed spelling is not a second name
        prune.parse_args(["--num-prompts", "3", "--out", "x"])


def test_every_flag_says_what_it_means_and_its_default(monkeypatch):
    for names, action in every_flag(monkeypatch):
        assert action.help and len(action.help) > 10, f"{names[0]} has no --help text"
        if not action.required:
            assert "default" in action.help, f"{names[0]}: --help does not say its default: {action.help!r}"


def test_help_texts_name_what_the_loaders_load():
    from models.animatediff import ANIMATEDIFF_ADAPTER, ANIMATEDIFF_BASE
    from rewards import REWARDS, VIDEOSCORE_DEFAULT
    from toy.shapes_model import TEACHER_DIR
    assert ANIMATEDIFF_BASE in defaults.PATH_HELP and ANIMATEDIFF_ADAPTER in defaults.ADAPTER_HELP
    assert os.path.relpath(TEACHER_DIR, ROOT) in defaults.PATH_HELP
    assert VIDEOSCORE_DEFAULT in defaults.REWARD_PATH_HELP and all(r in defaults.REWARD_HELP for r in REWARDS)
    assert defaults.MODEL_HELP == f"one of {', '.join(models.LOADERS)} (default: toy)"


def test_per_model_defaults_in_help_follow_the_presets():
    assert defaults.show(1e6) == "1e6" and defaults.show(6e-6) == "6e-6" and defaults.show([4, 4, 2]) == "4 4 2"
    assert defaults.per_model({"a": 1.0, "b": 1.0}) == "1 for every model"
    assert defaults.per_model({"a": [2, 1], "b": 7, "c": [2, 1], "d": None}, "all") == "2 1 for a, c; 7 for b; all for d"
    assert vip_loop.preset_default("blocks") == ("default: 4 4 2 for animatediff; 7 for videocrafter2; "
                                                 "2 for tiny, tiny-videocrafter2, tiny-wan; 5 6 for wan; 2 2 1 for toy")
    steps = vip_loop.preset_default("steps")        # unset in a preset: the model's own sampler steps
    assert "25 for animatediff" in steps and "50 for videocrafter2" in steps


def test_every_cli_defaults_to_the_toy_world_and_the_reward_follows_the_model():
    for module, args in CLIS.items():
        if not module.startswith(("toy.", "analysis.")):          # analysis reads run folders: no model
            assert importlib.import_module(module).parse_args(args).model == defaults.DEFAULT_MODEL == "toy"
    assert list(defaults.RUN_DEFAULTS) == list(models.LOADERS) and set(vip_loop.PRESETS) == set(models.LOADERS)
    expected = {"toy": "shapes", "tiny": "pixel", "tiny-videocrafter2": "pixel", "animatediff": "videoscore",
                "videocrafter2": "videoscore", "wan": "videoscore", "tiny-wan": "pixel"}
    for name, reward in expected.items():
        assert defaults.for_model(name)["reward"] == vip_loop.PRESETS[name]["reward"] == reward


@pytest.mark.parametrize("model", [[], ["--model", "tiny"]], ids=["toy", "tiny"])
def test_prune_runs_offline_with_the_defaults(model, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    r = subprocess.run([sys.executable, "prune.py", *model, "--num_prompts", "2", "--blocks", "1", "--steps", "2",
                        "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "pruned").is_dir()
    assert runtime.read_json(str(tmp_path / "prune.json"))["eval"]["seeds"] == [0, 1]   # prompt i: seed i (j = 0)
    assert f"reward {'pixel' if model else 'shapes'}" in r.stdout


# --- what lives where -----------------------------------------------------------------------------

def test_the_library_holds_no_test_fixtures():
    """Checkpoint writers for tests live in tests/tiny_checkpoints.py, not in the product's modules."""
    for path in python_files():
        if path.startswith("tests" + os.sep):
            continue
        tree = ast.parse(open(os.path.join(ROOT, path)).read())
        names = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        assert not [n for n in names if n.startswith("save_tiny")], (path, names)


def test_vip_loop_opens_with_the_loop():
    """Fig. 3 on the first screen of code: `run` and `run_stage` are the first functions defined."""
    tree = ast.parse(open(os.path.join(ROOT, "vip_loop.py")).read())
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert functions[:2] == ["run", "run_stage"], functions[:4]
    assert max(len(f.args.args) for f in tree.body if isinstance(f, ast.FunctionDef)) <= 6
