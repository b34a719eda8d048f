"""The layout a reader needs: the paper's files at the top, each opening with its section as a
loop; the machinery in `infra/`, the analysis in `analysis/`; which package may import which; one
spelling per flag with --help that says each default, and one set of defaults (tests/test_readme.py
runs them offline).
"""
import argparse
import ast
import contextlib
import importlib
import io
import os
import re

import pytest

from conftest import syntax_nodes, syntax_tree

import defaults
import models
import prune
import vip_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"prune", "curate", "redpo", "vip_loop", "evaluate"}          # the paper's files (the design card)
TOP = SCRIPTS | {"rewards", "defaults"}                                  # + what they act on, + the configuration


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
    for node in syntax_nodes(os.path.join(ROOT, path)):
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


def functions(module):
    """The function definitions of a top-level file, methods included, in file order."""
    return [n for n in syntax_nodes(os.path.join(ROOT, module + ".py")) if isinstance(n, ast.FunctionDef)]


def top_functions(module):
    return [n for n in syntax_tree(os.path.join(ROOT, module + ".py")).body if isinstance(n, ast.FunctionDef)]


# --- the top level shows the paper ------------------------------------------------------------------

def test_the_top_level_holds_the_papers_files_and_what_they_act_on():
    top = {p[:-3] for p in os.listdir(ROOT) if p.endswith(".py")}
    assert top == TOP and len(top) <= 8, top
    for name in ("README.md", "requirements.txt", "toy", "tests", "models", "infra", "analysis"):
        assert os.path.exists(os.path.join(ROOT, name)), name


def test_each_paper_file_opens_with_its_section():
    """After the docstring and constants, the first function is the paper's step as a loop."""
    first = {"prune": ["prune_stage", "block_importance"], "curate": ["filter_prompts", "curate", "both_videos"],
             "evaluate": ["evaluate_model"], "redpo": ["loss", "train"], "vip_loop": ["run", "run_stage"]}
    for module, names in first.items():
        got = [f.name for f in top_functions(module)][:len(names)]
        assert got == names, (module, got)
    train = next(f for f in top_functions("redpo") if f.name == "train")
    assert train.end_lineno - train.lineno + 1 <= 45, "redpo.train: the whole step, inline, fits on a screen"
    prune_stage = top_functions("prune")[0]
    assert prune_stage.end_lineno - prune_stage.lineno + 1 <= 35


def calls(function):
    """The dotted names a function calls ('model.generate', 'videos.reward', 'per_video'), nested functions included."""
    def dotted(node):
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            inner = dotted(node.value)
            return inner and f"{inner}.{node.attr}"
        return None
    return {dotted(n.func) for n in ast.walk(function) if isinstance(n, ast.Call)} - {None}


# Each step the section names, in the function that opens the file or one call below it.
STEPS = {
    "prune": {"prune_stage": {"block_importance", "choose_blocks", "model.remove", "target_properties"},
              "block_importance": {"model.skip", "model.generate", "videos.reward"}},    # skip, generate, score
    "curate": {"filter_prompts": {"clean_prompts", "describes", "llm_margins"},
               "curate": {"videos.each_batch", "pair_property"},                        # both videos, the rule
               "both_videos": {"videos.teacher_videos", "videos.student.generate", "videos.reward"}},
    "evaluate": {"evaluate_model": {"model.generate", "reward", "eval_result"}},
}


def test_the_papers_steps_are_one_call_deep():
    for module, steps in STEPS.items():
        by_name = {f.name: f for f in top_functions(module)}
        for name, wanted in steps.items():
            assert wanted <= calls(by_name[name]), (module, name, wanted - calls(by_name[name]))


def test_no_function_of_the_papers_files_takes_more_than_six_parameters():
    for module in SCRIPTS:
        for f in functions(module):
            n = len(f.args.posonlyargs) + len(f.args.args) + len(f.args.kwonlyargs) - (f.args.args[:1] and f.args.args[0].arg in ("self", "cls"))
            assert n <= 6, f"{module}.{f.name} takes {n} parameters"


def test_which_package_may_import_which():
    """The arrows point down: infra imports only infra (no paper file, model, reward or analysis);
    the models and rewards import no paper file and not each other; analysis reads run folders and
    loads no model or reward (but VBench's suite, which a model generates); evaluate.py calls no
    other paper file, so prune.py's calls into it go one way."""
    for m in [m for m in GRAPH if m.startswith("infra")]:
        assert all(n.startswith("infra") for n in GRAPH[m]), (m, GRAPH[m])
    family = [m for m in GRAPH if m == "models" or m.startswith("models.")]
    assert len(family) >= 4
    for m in family:
        assert not GRAPH[m] & (SCRIPTS | {"rewards"}), (m, GRAPH[m])
        assert all(n in family or n.startswith("infra") or n == "defaults" for n in GRAPH[m]), (m, GRAPH[m])
    assert not GRAPH["rewards"] & (SCRIPTS | set(family)), GRAPH["rewards"]
    for m in [m for m in GRAPH if m.startswith("analysis")]:
        assert not GRAPH[m] & {"prune", "curate", "redpo", "vip_loop"}, (m, GRAPH[m])
        if m != "analysis.vbench_eval":   # it generates VBench's suite with a model; the rest reads run folders
            assert not GRAPH[m] & ({"rewards", "models"} | set(family)), (m, GRAPH[m])
    assert GRAPH["analysis.dimensions"] == set()
    assert not GRAPH["evaluate"] & (SCRIPTS - {"evaluate"}), GRAPH["evaluate"]
    for m in ("defaults", "toy.shapes_world", "toy.gmm_model"):
        assert all(n.startswith(("infra", "analysis.dimensions")) for n in GRAPH[m]), (m, GRAPH[m])


def string_imports(path):
    """Project modules a file names in a 'module:function' string (the model registry's form), and
    whether it calls importlib.import_module or __import__ at all."""
    named, dynamic = set(), False
    for node in syntax_nodes(os.path.join(ROOT, path)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = re.fullmatch(r"([a-z_][a-z0-9_.]*):[a-z_][a-z0-9_]*", node.value)
            if match and match.group(1) in PROJECT:
                named.add(match.group(1))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                "import_module", "__import__"):
            dynamic = True
    return named, dynamic


def test_only_the_model_registry_imports_by_a_string_and_it_says_why():
    """The registry names each family's loader in a string and imports it on first load: the
    families subclass models.VideoModel, so this is the one arrow that points back up. Nothing
    else imports by a string, and the registry's comment says why it must."""
    found = {m: string_imports(p) for m, p in PROJECT.items()}
    assert {m for m, (named, dynamic) in found.items() if named or dynamic} == {"models"}, found
    assert found["models"][0] == {target.split(":")[0] for target in models.LOADERS.values()}
    for module in found["models"][0]:
        assert "models" in GRAPH[module], module                 # each family imports VideoModel back
    source = open(os.path.join(ROOT, "models", "__init__.py")).read()
    comment = source[:source.index("LOADERS = {")].rstrip().rsplit("\n\n", 1)[-1]
    assert comment.startswith("#") and "string" in comment and "VideoModel" in comment, comment


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


def test_every_file_opens_with_a_docstring():
    for path in python_files():
        if open(os.path.join(ROOT, path)).read().strip():
            assert ast.get_docstring(syntax_tree(os.path.join(ROOT, path))), f"{path} has no docstring"


# --- one flag convention, one set of defaults ---------------------------------------------------

CLIS = {   # module: the fewest arguments its parser accepts
    "prune": ["--out", "x"], "curate": ["--student", "s", "--property", "dynamic_degree", "--out", "x"],
    "evaluate": [], "redpo": ["--pairs", "p", "--out", "x"], "vip_loop": [], "models.__main__": [],
    "toy.shapes": ["evaluate"], "toy.gmm": ["--out", "x"], "analysis.vbench_eval": [],
    "analysis.user_study": ["score", "--study", "x"], "toy.capacity": [], "toy.confirm": [],
}
MAIN_ONLY = ["toy.compare", "toy.gmm_capacity", "analysis.capacity"]   # CLIs that parse inside main(): read through --help


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
        prune.parse_args(["--eval-prompts", "3", "--out", "x"])


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
    assert defaults.preset_default("blocks") == ("4 4 2 for animatediff; 7 for videocrafter2; "
                                                 "2 for tiny, tiny-videocrafter2, tiny-wan; 5 6 for wan; 2 2 1 for toy")
    steps = defaults.preset_default("steps", model_steps=models.DEFAULTS)   # unset in a preset: the model's own
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


# --- what lives where -----------------------------------------------------------------------------

def test_the_library_holds_no_test_fixtures():
    """Checkpoint writers for tests live in tests/tiny_checkpoints.py, not in the product's modules."""
    for path in python_files():
        if path.startswith("tests" + os.sep):
            continue
        names = [n.name for n in syntax_nodes(os.path.join(ROOT, path)) if isinstance(n, ast.FunctionDef)]
        assert not [n for n in names if n.startswith("save_tiny")], (path, names)
