"""One set of defaults for every CLI: the model, and per model its reward and its prompt files.

prune.py, curate.py, evaluate.py, redpo.py, vip_loop.py and `python -m models` all default to the
toy world (`--model toy`: the trained teacher shipped in toy/teacher/ and an exact reward, so it runs
offline on a CPU). A flag left unset takes the value for the model it names:

    model                         reward       eval prompts (prune, evaluate)   caption pool (curate)
    animatediff, videocrafter2    videoscore   prompts/eval_prompts.csv         prompts/pool.txt, filtered
    tiny, tiny-videocrafter2      pixel        prompts/eval_prompts.csv         prompts/pool.txt, filtered
    toy                           shapes       toy/eval_prompts.txt (18)        toy/train_prompts.txt (72)

The shapes reward scores only its own grammar, so the toy world brings its own split; and that
grammar names colour, shape and motion in every prompt, so Sec. 3.3's caption filter (which would
also strip the articles the toy model reads) is off for it. vip_loop.py's PRESETS add the training
settings on top of these.

    python prune.py --out runs/x/stage_1                  # toy, shapes, toy/eval_prompts.txt
    python prune.py --model tiny --out runs/x/stage_1     # tiny, pixel, prompts/eval_prompts.csv
"""
import os

from runtime import UserError

ROOT = os.path.dirname(os.path.abspath(__file__))
EVAL_PROMPTS = os.path.join(ROOT, "prompts", "eval_prompts.csv")   # captions with static labels
POOL = os.path.join(ROOT, "prompts", "pool.txt")                   # WebVid-style captions to curate from

DEFAULT_MODEL = "toy"

CAPTIONS = dict(prompts=EVAL_PROMPTS, pool=POOL, filter_prompts=True)
RUN_DEFAULTS = {
    "animatediff": dict(CAPTIONS, reward="videoscore"),
    "tiny": dict(CAPTIONS, reward="pixel"),
    "toy": dict(reward="shapes", prompts=os.path.join(ROOT, "toy", "eval_prompts.txt"),
                pool=os.path.join(ROOT, "toy", "train_prompts.txt"), filter_prompts=False),
    "videocrafter2": dict(CAPTIONS, reward="videoscore"),
    "tiny-videocrafter2": dict(CAPTIONS, reward="pixel"),
}


# --help texts that several CLIs share. The loaders in models/ and rewards.py hold the hub ids;
# tests/test_layout.py checks that these texts name them.
PATH_HELP = ("hub id or directory of the full model M0 (default: the model's own: "
             "stable-diffusion-v1-5/stable-diffusion-v1-5 for animatediff, toy/teacher for toy, random "
             "weights from a config for tiny and tiny-videocrafter2; videocrafter2 needs one)")
ADAPTER_HELP = ("AnimateDiff's motion adapter, hub id or directory (default: "
                "guoyww/animatediff-motion-adapter-v1-5-2 for animatediff; no other model takes one)")


def show(value, none="none"):
    """A default as --help writes it: 1e6 for 1000000.0, 4 4 2 for [4, 4, 2], a path of the
    repository relative to it, `none` for None."""
    if value is None:
        return none
    if isinstance(value, (list, tuple)):
        return " ".join(show(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}".replace("e+0", "e").replace("e-0", "e-")
    if isinstance(value, str) and os.path.isabs(value) and value.startswith(ROOT + os.sep):
        return os.path.relpath(value, ROOT)
    return str(value)


def per_model(values, none="none"):
    """The --help text of a default that follows --model: {model: value} -> "4 for a, b; 7 for c"
    (models grouped by value, in the order given), or "4 for every model"."""
    groups = {}
    for model, value in values.items():
        groups.setdefault(show(value, none), []).append(model)
    if len(groups) == 1:
        return f"{next(iter(groups))} for every model"
    return "; ".join(f"{text} for {', '.join(models)}" for text, models in groups.items())


def run_default(key):
    """per_model's text for a key of RUN_DEFAULTS ("reward", "prompts", "pool")."""
    return per_model({name: run[key] for name, run in RUN_DEFAULTS.items()})


def steps_help(model_defaults):
    """--steps' help from models.DEFAULTS (passed in: this file loads no torch)."""
    return f"denoising steps (default: the model's: {per_model({m: d['steps'] for m, d in model_defaults.items()})})"


MODEL_HELP = f"one of {', '.join(RUN_DEFAULTS)} (default: {DEFAULT_MODEL})"
REWARD_HELP = f"the reward of rewards.py (default: {run_default('reward')})"
REWARD_PATH_HELP = "VideoScore's weights, hub id or directory (default: TIGER-Lab/VideoScore-v1.1)"


def for_model(name):
    """What a CLI uses with model `name` when not told: {"reward", "prompts" (the eval prompt file),
    "pool" (the curation prompt file), "filter_prompts" (Sec. 3.3's caption filter on the pool)}."""
    if name not in RUN_DEFAULTS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(RUN_DEFAULTS)}")
    return dict(RUN_DEFAULTS[name])


def fill(args, prompt_file="prompts"):
    """Set a CLI's unset --reward and --prompts from its --model; `prompt_file`: "prompts" (pruning,
    evaluation) or "pool" (curation). Returns the model's defaults."""
    run = for_model(args.model)
    args.reward = args.reward or run["reward"]
    args.prompts = args.prompts or run[prompt_file]
    return run
