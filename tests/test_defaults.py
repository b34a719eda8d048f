"""One home for every default (defaults.py): the paper's settings written once, each script's flags
built from the model's preset (one name a setting, no prefix matching, --help naming each default),
and the standalone scripts at the settings vip_loop.py uses."""
import argparse
import ast
import contextlib
import io
import json
import os

import pytest

from conftest import syntax_nodes

import curate
import defaults
import evaluate
import models
import prune
import redpo
import vip_loop
from infra.cli import UserError
from infra.prompt_files import read_prompts, search_seeds
from infra.run_folder import CONFIG_KEYS, check_config, with_provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"prune": prune, "curate": curate, "evaluate": evaluate, "redpo": redpo, "vip_loop": vip_loop}
NEEDS = {"redpo": ["--pairs", "p", "--out", "o"]}   # the flags a script cannot run without


def loop(*argv):
    """vip_loop.py's configuration for a command line."""
    return vip_loop.resolve(vip_loop.parse_args(list(argv)), world=1)


def filled(name, *argv):
    """A script's flags for a command line, the unset ones from the model's preset."""
    args = SCRIPTS[name].parse_args(list(argv) + NEEDS.get(name, []))
    defaults.fill(args)
    return args


def source_files():
    out = []
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = [x for x in dirs if not x.startswith(".") and x not in ("__pycache__", "runs", "samples", "tests")]
        out += [os.path.join(d, f) for f in files if f.endswith(".py")]
    return sorted(out)


# --- the standalone scripts do what the loop does -------------------------------------------------

def test_prune_with_no_flags_is_the_loops_first_stage():
    cfg, args = loop(), prune.resolve(prune.parse_args([]))
    # The toy loop's stage 1: 2 of the 3 stages' 2 2 1 blocks, DDIM with 10 steps, 8 clips a call.
    assert (args.blocks, args.steps, args.gen_batch) == (cfg["blocks"][0], cfg["steps"], cfg["gen_batch"]) == (2, 10, 8)
    for key in set(prune.FLAGS) - {"model"}:
        assert getattr(args, key) == cfg[key], key
    search = prune.stage_search(args, reward=None)
    # The search: the 18 search prompts at the search seeds; the pruned row: 18 eval prompts x 4 seeds.
    file = os.path.join(ROOT, "toy", "search_prompts.txt")
    assert search.prompts == [p["prompt"] for p in read_prompts(file)] and len(search.prompts) == 18
    assert search.seeds == search_seeds(18) == [1000000 + i for i in range(18)]
    prompts, seeds, _ = search.row_set
    assert len(prompts) == 72 and seeds[:2] == [0, 1] and seeds[18:20] == [1000, 1001] and seeds[-1] == 3017
    assert search.target_set is None and search.gen_kw == {"steps": 10} and search.batch_size == 8


@pytest.mark.parametrize("model,blocks", [("tiny", 2), ("animatediff", 4), ("videocrafter2", 7), ("wan", 5)])
def test_prune_takes_the_first_stage_of_every_model(model, blocks):
    cfg, args = loop("--model", model), prune.resolve(prune.parse_args(["--model", model]))
    assert args.blocks == cfg["blocks"][0] == blocks
    assert (args.reward, args.prompts, args.eval_prompts, args.steps) == (cfg["reward"], cfg["prompts"],
                                                                          cfg["eval_prompts"], cfg["steps"])
    assert prune.resolve(prune.parse_args(["--model", model, "--blocks", "3"])).blocks == 3


def test_prune_searches_part_of_the_eval_set_as_the_loop_does():
    # --search_prompts none: the search on the first seed index (18 videos), row and targets on all 72.
    search = prune.stage_search(prune.resolve(prune.parse_args(["--search_prompts", "none"])), reward=None)
    assert search.seeds == list(range(18)) and len(search.target_set[0]) == 72 and search.row_set is None
    tiny = prune.stage_search(prune.resolve(prune.parse_args(["--model", "tiny"])), reward=None)
    assert tiny.seeds == [0, 1] and tiny.target_set is None     # tiny: 2 prompts, one seed, the whole set


@pytest.mark.parametrize("model", list(defaults.PRESETS))
@pytest.mark.parametrize("script", ["prune", "curate", "evaluate", "redpo"])
def test_every_unset_flag_is_the_loops_value(script, model):
    cfg, args = loop("--model", model), filled(script, "--model", model)
    shared = [k for k in vars(args) if k in cfg and k not in ("blocks", "out")]
    assert len(shared) >= 8
    for key in shared:
        assert getattr(args, key) == cfg[key], (script, model, key)


def test_redpo_trains_each_model_at_its_preset():
    toy = filled("redpo")                                         # the toy loop's training, not the paper's
    assert (toy.lr, toy.batch, toy.w_sft, toy.epochs, toy.grad_accum) == (1e-4, 4, "auto", 2, 1)
    ad = filled("redpo", "--model", "animatediff")                # Sec. 4.1's 2 pairs as 1 x 2 micro-steps
    assert (ad.lr, ad.beta, ad.batch, ad.grad_accum, ad.w_sft, ad.gradient_checkpointing) == (6e-6, 5000, 1, 2, 1e4, True)
    vc2 = filled("redpo", "--model", "videocrafter2")
    assert (vc2.lr, vc2.batch, vc2.grad_accum, vc2.w_sft) == (6e-6, 2, 1, 1e6)
    assert filled("redpo", "--model", "animatediff", "--no-gradient_checkpointing", "--lr", "1e-3").lr == 1e-3
    assert filled("redpo", "--model", "animatediff", "--no-gradient_checkpointing").gradient_checkpointing is False


def test_the_default_loop_keeps_its_settings():
    """config.json of `python vip_loop.py` is the shipped run's, key for key (but for --report_to and
    --lora, which the shipped runs predate: how the run is watched, and no adapter), and resuming it is allowed."""
    cfg = loop("--out", "runs/shapes/redpo-s0")
    shipped = json.load(open(os.path.join(ROOT, "docs", "shapes", "runs", "redpo-s0", "config.json")))
    ours = with_provenance(cfg)
    assert ours.pop("report_to") == "none" and "report_to" not in CONFIG_KEYS
    assert ours.pop("lora") is None and "lora" not in shipped   # full weights, as every shipped run
    assert {k: v for k, v in ours.items() if k != "code"} == {k: v for k, v in shipped.items() if k != "code"}
    check_config(os.path.join(ROOT, "docs", "shapes", "runs", "redpo-s0"), cfg)


def test_a_count_below_one_is_one_line():
    for script, flag in [("prune", "--eval_seeds"), ("curate", "--seeds"), ("redpo", "--batch"),
                         ("evaluate", "--eval_prompts"), ("vip_loop", "--epochs")]:
        with pytest.raises(UserError, match=f"{flag} must be at least 1 \\(got 0\\)"):
            filled(script, flag, "0")


# --- one name a setting, no prefix matching ----------------------------------------------------

@pytest.mark.parametrize("argv", [["--epoch", "3"], ["--block", "2"], ["--eval_prompt", "2"], ["--mod", "tiny"]])
def test_a_prefix_of_a_flag_is_refused(argv):
    for name, module in SCRIPTS.items():
        with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
            module.parse_args(argv + NEEDS.get(name, []))


def test_every_parser_turns_prefix_matching_off():
    calls = []
    for path in source_files():
        for node in syntax_nodes(path):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("ArgumentParser", "add_parser"):
                calls.append((os.path.relpath(path, ROOT), node.lineno,
                              any(k.arg == "allow_abbrev" and k.value.value is False for k in node.keywords)))
    assert len(calls) > 25
    assert [c for c in calls if not c[2]] == []


@pytest.mark.parametrize("old", ["--teacher", "--batch_size", "--num_seeds", "--max_prompts", "--num_prompts",
                                 "--limit"])
def test_the_other_names_of_a_setting_are_gone(old):
    for name, module in SCRIPTS.items():
        with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
            module.parse_args([old, "1"] + NEEDS.get(name, []))


def parser_actions(module):
    """{flag: argparse action} of a script's parser."""
    actions = {}
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        actions.update({a.option_strings[0]: a for a in self._actions if a.option_strings})
        return original(self, args, namespace)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", capture)
        module.parse_args(NEEDS.get(module.__name__, []))
    return actions


def test_a_flag_means_the_same_in_every_script():
    """A flag of several scripts has one help text and one default, defaults.FLAGS' (--student, --out
    and prune's --blocks, one stage's count, say what they are in each)."""
    seen = {}
    for module in SCRIPTS.values():
        for flag, action in parser_actions(module).items():
            if flag not in ("-h", "--student", "--out") and not (module is prune and flag == "--blocks"):
                seen.setdefault(flag, []).append((action.help, action.default, action.type, str(action.choices)))
    shared = {flag: set(specs) for flag, specs in seen.items() if len(specs) > 1}
    assert len(shared) >= 20 and {"--path", "--gen_batch", "--seeds", "--pool_prompts", "--eval_prompts"} <= set(shared)
    assert {flag: specs for flag, specs in shared.items() if len(specs) > 1} == {}
    assert all(flag[2:] in defaults.FLAGS for flag in shared)


# --- --help names each default, per model -------------------------------------------------------

def help_text(module):
    out = io.StringIO()
    with pytest.raises(SystemExit), contextlib.redirect_stdout(out):
        module.parse_args(["--help"])
    return " ".join(out.getvalue().split())


def test_help_names_each_default_per_model():
    text = help_text(redpo)
    assert "AdamW learning rate (default: 6e-6 for animatediff, videocrafter2, wan; 1e-4 for tiny, " \
           "tiny-videocrafter2, tiny-wan, toy)" in text
    assert "(default: 1e4 for animatediff, tiny; 1e6 for videocrafter2, tiny-videocrafter2, tiny-wan; auto for " \
           "wan, toy)" in text
    assert "(default: 5000 for every model)" in text and "(default: on for animatediff, videocrafter2, wan, " \
           "tiny-wan; off for tiny, tiny-videocrafter2, toy)" in text
    assert "(default: the loop's first stage: 4 for animatediff; 7 for videocrafter2; 2 for tiny, " \
           "tiny-videocrafter2, tiny-wan, toy; 5 for wan)" in help_text(prune)
    assert "sampler steps (default: 25 for animatediff; 50 for videocrafter2, wan; 4 for tiny, tiny-videocrafter2, " \
           "tiny-wan; 10 for toy)" in help_text(evaluate)
    assert "(default: 2000 for animatediff, videocrafter2, wan; 8 for tiny, tiny-videocrafter2, tiny-wan; all " \
           "for toy)" in help_text(curate)
    for module in SCRIPTS.values():   # every flag that follows the model says so, with every model's value
        for flag, action in parser_actions(module).items():
            if defaults.FLAGS.get(flag[2:], {}).get("means"):
                assert "for every model" in action.help or all(m in action.help for m in models.LOADERS), flag


def test_show_writes_a_default_as_a_reader_would():
    assert [defaults.show(v) for v in (1e4, 1e6, 6e-6, 1e-4, 5000.0, 2.0, 0.0, 2000, True, False, [4, 4, 2], None)] \
        == ["1e4", "1e6", "6e-6", "1e-4", "5000", "2", "0", "2000", "on", "off", "4 4 2", "none"]


# --- each paper setting is written once ---------------------------------------------------------

def literal_bindings(path, name):
    """Constants the file binds to setting `name`: name=C (keyword, assignment, default argument,
    class field), {"name": C} and add_argument("--name", default=C)."""
    found = []
    for node in syntax_nodes(path):
        pairs = []
        if isinstance(node, ast.keyword):
            pairs = [(node.arg, node.value)]
        elif isinstance(node, ast.Dict):
            pairs = [(k.value, v) for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            pairs = [(t.id, node.value) for t in targets if isinstance(t, ast.Name) and node.value is not None]
        elif isinstance(node, ast.arguments):
            args = node.posonlyargs + node.args
            pairs = list(zip([a.arg for a in args[len(args) - len(node.defaults):]], node.defaults))
            pairs += [(a.arg, d) for a, d in zip(node.kwonlyargs, node.kw_defaults) if d is not None]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument" and node.args:
            flag = node.args[0]
            pairs = [(flag.value[2:], k.value) for k in node.keywords
                     if k.arg == "default" and isinstance(flag, ast.Constant) and isinstance(flag.value, str)]
        found += [(node_name, v.value) for node_name, v in pairs
                  if node_name == name and isinstance(v, ast.Constant)]
    return found


@pytest.mark.parametrize("name", [k for k, v in defaults.PAPER.items() if isinstance(v, (int, float))])
def test_each_paper_setting_is_written_once(name):
    value = defaults.PAPER[name]
    where = [os.path.relpath(p, ROOT) for p in source_files() for n, v in literal_bindings(p, name)
             if v == value and not isinstance(v, bool)]
    assert where == ["defaults.py"], f"{name} = {value} is written in {where}; read defaults.PAPER[{name!r}]"


def test_the_paper_numbers_appear_once_in_the_code():
    """beta 5000 and lr 6e-6, as numbers anywhere in the code (prose may cite them)."""
    for value in (5000, 6e-6):
        where = [os.path.relpath(p, ROOT) for p in source_files() for node in syntax_nodes(p)
                 if isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value == value]
        assert where == ["defaults.py"], (value, where)
