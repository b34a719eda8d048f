"""One set of defaults for every CLI: the model, and per model its reward and its prompt files.

prune.py, curate.py, evaluate.py, redpo.py, vip_loop.py and `python -m models` all default to the
toy world (`--model toy`: the trained teacher shipped in toy/teacher/ and an exact reward, so it runs
offline on a CPU). A flag left unset takes the value for the model it names:

    model                         reward       eval prompts (prune, evaluate)   caption pool (curate)
    animatediff, videocrafter2,   videoscore   prompts/eval_prompts.csv         prompts/pool.txt, filtered
      wan
    tiny, tiny-videocrafter2,     pixel        prompts/eval_prompts.csv         prompts/pool.txt, filtered
      tiny-wan
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
    "wan": dict(CAPTIONS, reward="videoscore"),
    "tiny-wan": dict(CAPTIONS, reward="pixel"),
}


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
