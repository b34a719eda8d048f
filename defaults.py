"""One home for every default: the paper's settings (PAPER), each model's preset (PRESETS), and the
command-line flags built from them (add_flags, fill).

prune.py, curate.py, evaluate.py, redpo.py and vip_loop.py name a setting the same way and default
to the toy world (`--model toy`: the trained teacher shipped in toy/teacher/ and an exact reward, so
it runs offline on a CPU). A flag left unset takes the value of the preset of the model it names,
the value vip_loop.py uses: `python prune.py` is the loop's first stage, `python redpo.py` trains at
the loop's settings, `python evaluate.py` makes the loop's eval rows. Each --help names the value
per model. `python -m models` samples at the model's own settings (models.DEFAULTS).

    model                         reward       eval prompts (prune, evaluate)   caption pool (curate)
    animatediff, videocrafter2,   videoscore   prompts/eval_prompts.csv         prompts/pool.txt, filtered
      wan
    tiny, tiny-videocrafter2,     pixel        prompts/eval_prompts.csv         prompts/pool.txt, filtered
      tiny-wan
    toy                           shapes       toy/eval_prompts.txt (18)        toy/train_prompts.txt (72)

The shapes reward scores only its own grammar, so the toy world brings its own split; and that
grammar names colour, shape and motion in every prompt, so Sec. 3.3's caption filter (which would
also strip the articles the toy model reads) is off for it.

    python prune.py                      # toy: the loop's stage 1 (2 blocks, 10 sampler steps, the search prompts)
    python prune.py --model tiny         # tiny: pixel reward, prompts/eval_prompts.csv, 2 blocks
"""
import argparse
import os

from infra.cli import UserError
from infra.tensorboard_log import REPORT_TO

ROOT = os.path.dirname(os.path.abspath(__file__))
EVAL_PROMPTS = os.path.join(ROOT, "prompts", "eval_prompts.csv")   # captions with static labels
POOL = os.path.join(ROOT, "prompts", "pool.txt")                   # WebVid-style captions to curate from

DEFAULT_MODEL = "toy"

# Sec. 4.1, "Training details": "Both models were trained with beta = 5000 and learning rate = 6e-6
# ... we set the SFT weight to 1e4 for AnimateDiff and 1e6 for VideoCrafter. All experiments were
# conducted with a 2k prompt subset, batch size 2, and 2 training epochs per stage." With ReDPO's loss
# (Eq. 3) and no gradient accumulation; w_sft is AnimateDiff's (VideoCrafter2's 1e6 is in its preset).
# The one place these numbers are written: the presets below, every flag and redpo.Settings read them
# (tests/test_defaults.py checks that no other file writes them).
PAPER = dict(method="redpo", beta=5000.0, w_sft=1e4, lr=6e-6, batch=2, grad_accum=1, epochs=2, pool_prompts=2000)

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


LORA_HELP = ("train a LoRA adapter of this rank instead of the weights: the student and the teacher share one copy "
             "of M0's weights, in bf16 on a GPU (the student skips its removed blocks; the teacher runs every block "
             "with the adapter off), and on a GPU the video model and the reward take it in turns "
             "(infra/residency.py); a LoRA student folder holds the adapter; `python -m models.export` merges it "
             "(default: off, every trainable weight, as the paper)")


# Per model: the settings a user of the paper expects, on top of the model's reward and prompt files
# (RUN_DEFAULTS). The real models take the paper's (PAPER); tiny and toy are small and fast so the whole
# loop runs on a CPU. `blocks`: one count for every stage, or a list with one per stage.
TRAINING = {
    # AnimateDiff's schedule is inferred from Table 1's Param column, 0.453B -> 0.309 -> 0.219 -> 0.147:
    # the adapter's 21 motion modules are 11 of 36.1M, 5 of 9.0M and 5 of 2.3M parameters, and
    # 4, 4, 2 modules (4 large; 2 large + 2 medium; 2 large) reach those numbers, while Sec. 4.1's
    # "4 per stage" cannot (no 12 modules leave 0.147B). tests/test_schedule.py checks both.
    # The paper's batch of 2 pairs per step as 1 pair x 2 micro-steps, with gradient checkpointing: one
    # step of 2 pairs at 16 x 512 x 512 needs 81 GiB even checkpointed, 1 pair fits 80 GB (docs/memory).
    "animatediff": dict(PAPER, stages=3, blocks=[4, 4, 2], batch=1, grad_accum=2, gradient_checkpointing=True,
                        tau=2.0),
    # VideoCrafter2's prunable blocks are single residual layers (models/videocrafter2.py), finer than the
    # paper's U-Net blocks: 7 of them per stage remove about the paper's 0.239B, then 0.272B (4 reach <= 0.144B).
    # Gradient checkpointing on: one step at 16 x 320 x 512 needs it to fit 80 GB (docs/memory).
    "videocrafter2": dict(PAPER, stages=2, blocks=7, w_sft=1e6, gradient_checkpointing=True, tau=2.0),
    "tiny": dict(PAPER, stages=2, blocks=2, lr=1e-4, epochs=1, tau=0.0, eval_prompts=2, pool_prompts=8),
}
TRAINING["tiny-videocrafter2"] = dict(TRAINING["tiny"], w_sft=TRAINING["videocrafter2"]["w_sft"])
# Wan2.1-T2V-1.3B (models/wan.py): 30 transformer blocks of 46.4M parameters, 97.9% of its 1.419B. The
# paper's other whole-denoiser model, VideoCrafter2, lost 16.9% then 36.2% over two stages (Table 1:
# 1.413 -> 1.174 -> 0.902B); 5 then 6 blocks give Wan -16.4% then -36.0% (1.419 -> 1.187 -> 0.908B).
# w_sft: the paper gives none for Wan, so its rule sets it ("auto": scale matching, redpo.settle_w_sft).
# Gradient checkpointing on: one step at 81 x 480 x 832 needs it to fit 80 GB (docs/memory).
TRAINING["wan"] = dict(TRAINING["videocrafter2"], blocks=[5, 6], w_sft="auto")
TRAINING["tiny-wan"] = dict(TRAINING["tiny-videocrafter2"], gradient_checkpointing=True)
# The toy world (toy/shapes_world.py): all 18 held-out prompts for pruning and evaluation, all 72
# training prompts as the curation pool, unfiltered (RUN_DEFAULTS names the files). Three stages
# cutting 2, 2, 1 of the 10 motion modules: the paper's AnimateDiff schedule 4, 4, 2 (of 21) at half
# scale. Not the paper's -67.5% of the motion-module parameters (5 of 10 modules remove -85.8% here):
# two of the modules the block search takes first cost the toy teacher nothing, so a schedule of 4
# modules would leave a stage cutting only a dead module (pilots on the training prompts,
# docs/shapes/README.md). w_sft by the paper's rule ("auto", redpo.W_SFT_BATCHES).
TRAINING["toy"] = dict(PAPER, stages=3, blocks=[2, 2, 1], w_sft="auto", lr=1e-4, batch=4, tau=0.0, pool_prompts=None)
# What a model's entry does not say: every eval prompt, one video per curation prompt (seed 0), no
# gradient checkpointing.
COMMON = dict(eval_prompts=None, seeds=1, gradient_checkpointing=False)
# The eval set is eval_prompts x eval_seeds videos (prompt i, seed index j: seed 1000 j + i), the
# same for every run of a model whatever its --seed (the training seed), so that rows and runs
# compare paired, video by video. The block search may use the first search_seeds of them (None:
# all). steps: the sampler's steps in the loop (None: the model's own). gen_batch: videos per
# generate call (a speed setting, not part of the experiment: resuming may change it).
# search_prompts: a prompt file for the block search and the target properties instead of the eval
# set (None: the eval set's first search_seeds, the paper's way).
EVALUATION = {name: dict(eval_seeds=1, search_seeds=None, search_prompts=None, steps=None, gen_batch=4)
              for name in TRAINING}
# toy: 18 prompts x 4 seeds = 72 videos per row, the block search on the first seed (18 videos), DDIM
# with 10 steps instead of the teacher's 20 (held-out total 0.811 vs 0.821 over 36 clips, at half the
# cost), 8 clips a generate call (the same uint8 clips, less per-call overhead).
# The toy's block search and targets use 18 training prompts (toy/search_prompts.txt: each held-out
# colour and shape with another motion), one seed each, so that no verdict on the held-out set is
# true by construction.
EVALUATION["toy"] = dict(eval_seeds=4, search_seeds=1, steps=10, gen_batch=8,
                         search_prompts=os.path.join(ROOT, "toy", "search_prompts.txt"))
PRESETS = {name: {**for_model(name), **COMMON, **training, **EVALUATION[name]}
           for name, training in TRAINING.items()}


def preset(name):
    """The settings of model `name` (PRESETS), or a one-line error naming the models."""
    if name not in PRESETS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def blocks_per_stage(stages, blocks):
    """--blocks as one count per stage: a single number (an int or a one-element list) means every
    stage; a list must have one count per stage."""
    counts = [blocks] if isinstance(blocks, int) else list(blocks)
    if len(counts) == 1:
        counts = counts * stages
    if len(counts) != stages:
        raise UserError(f"--blocks has {len(counts)} counts ({' '.join(map(str, counts))}) for {stages} "
                        "stages; pass one count for every stage, or one per stage")
    if min(counts) < 1:
        raise UserError(f"--blocks must be at least 1 in every stage (got {' '.join(map(str, counts))})")
    return counts


def first_stage_blocks(name):
    """The blocks the loop's first stage removes with model `name`'s preset (prune.py's default)."""
    p = preset(name)
    return blocks_per_stage(p["stages"], p["blocks"])[0]


# ---------------------------------------------------------------------------------------------
# The flags: one name, one meaning and one default (the model's preset) in every script
# ---------------------------------------------------------------------------------------------

def show(value, none="none"):
    """A default as --help writes it: 1e4 for 10000.0, 1e-4 for 0.0001, 4 4 2 for [4, 4, 2], on / off
    for True / False, a path of the repository relative to it, `none` for None."""
    if value is None:
        return none
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(show(v) for v in value)
    if isinstance(value, float):
        mantissa, exponent = f"{value:e}".split("e")
        if value and abs(int(exponent)) >= 4:
            return f"{float(mantissa):g}e{int(exponent)}"
        return f"{value:g}"
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


def preset_default(key, none="none", model_steps=None):
    """A preset setting's default for --help, per model (per_model). model_steps: models.DEFAULTS, whose
    sampler steps stand where a preset leaves steps unset (this file loads no torch, so it is passed in)."""
    values = {name: p[key] for name, p in PRESETS.items()}
    if key == "steps":
        values = {name: v or model_steps[name]["steps"] for name, v in values.items()}
    return per_model(values, none)


def steps_help(model_defaults):
    """--steps' help where the model's own sampler steps are the default (`python -m models`)."""
    return f"denoising steps (default: the model's: {per_model({m: d['steps'] for m, d in model_defaults.items()})})"


MODEL_HELP = f"one of {', '.join(RUN_DEFAULTS)} (default: {DEFAULT_MODEL})"
REWARD_HELP = f"the reward of rewards.py (default: {preset_default('reward')})"
REWARD_PATH_HELP = "VideoScore's weights, hub id or directory (default: TIGER-Lab/VideoScore-v1.1)"
# The loaders in models/ and rewards.py hold the hub ids; tests/test_layout.py checks that these texts name them.
PATH_HELP = ("hub id or directory of the full model M0 (default: the model's own: "
             "stable-diffusion-v1-5/stable-diffusion-v1-5 for animatediff, toy/teacher for toy, random "
             "weights from a config for tiny and tiny-videocrafter2; videocrafter2 needs one)")
ADAPTER_HELP = ("AnimateDiff's motion adapter, hub id or directory (default: "
                "guoyww/animatediff-motion-adapter-v1-5-2 for animatediff; no other model takes one)")

# Every flag that more than one script takes: name -> argparse keywords. `means`: what it sets; its
# default follows --model, and add_flags writes the preset's value per model after it (`none`: how
# --help says a preset's None). `help`: the whole text of a flag whose default is fixed.
FLAGS = {
    "model": dict(default=DEFAULT_MODEL, help=MODEL_HELP),
    "path": dict(help=PATH_HELP),
    "adapter": dict(help=ADAPTER_HELP),
    "reward": dict(help=REWARD_HELP),
    "reward_path": dict(help=REWARD_PATH_HELP),
    "reward_dtype": dict(default="bf16", help="VideoScore's dtype (default: bf16, as the official inference "
                         "on every device)"),
    "method": dict(means="the training loss: redpo (ReDPO, Eq. 3), sft (the SFT baseline of Table 3) or dpo "
                   "(ReDPO without its SFT term, Table 4)"),
    "stages": dict(type=int, means="pruning stages K"),
    "blocks": dict(type=int, nargs="+", means="blocks removed per stage: one count for every stage, or one per stage"),
    "greedy": dict(action="store_true", help="re-score after each block removed, k searches (prune.py; default: "
                   "off, one search per stage)"),
    "beta": dict(type=float, means="beta of the DPO term, Eq. 1, with T w(lambda_t) folded in (redpo.py)"),
    "w_sft": dict(means="weight of the SFT term, Eq. 3: a number, or auto (each stage: mean DPO / mean SFT on "
                  "its first redpo.W_SFT_BATCHES batches at the initial student, the paper's rule; logged in "
                  "train/w_sft.json and metrics.jsonl)"),
    "lr": dict(type=float, means="AdamW learning rate"),
    "batch": dict(type=int, means="pairs per process per micro-step"),
    "epochs": dict(type=int, means="passes over each stage's pairs"),
    "grad_accum": dict(type=int, means="micro-steps per optimizer step, each of --batch pairs"),
    "gradient_checkpointing": dict(action=argparse.BooleanOptionalAction, means="trade compute for memory in "
                                   "training; --no-gradient_checkpointing turns it off"),
    "tau": dict(type=float, means="minimum loser score tau_p: a pair is kept only when the pruned model's video "
                "scores above it (curate.py)"),
    "prompts": dict(means="eval prompt file, .txt, .csv or .json with static labels"),
    "pool": dict(means="prompt pool for curation, .txt, .csv or .json"),
    "eval_prompts": dict(type=int, means="use the first N eval prompts", none="all"),
    "pool_prompts": dict(type=int, means="curate at most the first N filtered prompts of the pool", none="all"),
    "seeds": dict(type=int, means="videos per curation prompt, seeds 0..N-1"),
    "eval_seeds": dict(type=int, means="videos per eval prompt: prompt i at seed index j has seed 1000 j + i"),
    "search_seeds": dict(type=int, means="of those, how many seed indices the block search generates", none="all"),
    "search_prompts": dict(means="prompt file for the block search and the target properties, apart from the "
                           "eval set; none: the eval set, the paper's way"),
    "steps": dict(type=int, means="sampler steps"),
    "gen_batch": dict(type=int, means="videos per generate call, a speed setting"),
    "seed": dict(type=int, default=0, help="the training seed: pair order, t, eps (default: 0); the eval set does "
                 "not depend on it, so runs with other seeds compare video by video"),
    "report_to": dict(default="none", choices=REPORT_TO, help="tensorboard: also log the run to OUT/tensorboard, one "
                      "step axis for all its stages (default: none)"),
    "lora": dict(type=int, default=None, metavar="RANK", help=LORA_HELP),
}
# Settings that count something: fill refuses a value below 1.
COUNTS = ("stages", "batch", "grad_accum", "epochs", "seeds", "eval_seeds", "search_seeds", "gen_batch",
          "eval_prompts", "pool_prompts", "steps")


def add_flags(parser, names, model_steps=None, **kw):
    """Add the flags `names` (FLAGS) to an argparse parser. A flag that follows the model defaults to
    None, for fill to set, and its --help names the preset's value per model. model_steps:
    models.DEFAULTS, for --steps' help; kw: argparse keywords from a file this one does not import,
    per flag (method={"choices": redpo.METHODS})."""
    for name in names:
        spec = dict(FLAGS[name], **kw.get(name, {}))
        means, none = spec.pop("means", None), spec.pop("none", "none")
        if means is not None:
            spec["help"] = f"{means} (default: {preset_default(name, none, model_steps)})"
        parser.add_argument(f"--{name}", **spec)


def fill(args):
    """Set each unset (None) flag of a parsed command line to the value of its --model's preset, the
    value vip_loop.py uses; refuse a count below 1 in one line. Returns the preset."""
    settings = preset(args.model)
    for key in vars(args):
        if getattr(args, key) is None and key in settings:
            setattr(args, key, settings[key])
        value = getattr(args, key)
        if key in COUNTS and value is not None and value < 1:
            raise UserError(f"--{key} must be at least 1 (got {value})")
    if getattr(args, "search_prompts", None) in ("none", ""):   # the eval set, as the paper does
        args.search_prompts = None
    return settings
