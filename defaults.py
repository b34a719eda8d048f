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
also strip the articles the toy model reads) is off for it. PRESETS adds the
training and evaluation settings vip_loop.py uses (and prints in its --help).

    python prune.py --out runs/x/stage_1                  # toy, shapes, toy/eval_prompts.txt
    python prune.py --model tiny --out runs/x/stage_1     # tiny, pixel, prompts/eval_prompts.csv
"""
import os

from infra.cli import UserError

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


# --help texts that several CLIs share. The loaders in models/ and rewards.py hold the hub ids;
# tests/test_layout.py checks that these texts name them.
PATH_HELP = ("hub id or directory of the full model M0 (default: the model's own: "
             "stable-diffusion-v1-5/stable-diffusion-v1-5 for animatediff, toy/teacher for toy, random "
             "weights from a config for tiny and tiny-videocrafter2; videocrafter2 needs one)")
ADAPTER_HELP = ("AnimateDiff's motion adapter, hub id or directory (default: "
                "guoyww/animatediff-motion-adapter-v1-5-2 for animatediff; no other model takes one)")
LORA_HELP = ("train a LoRA adapter of this rank instead of the weights: the student and the teacher share one copy "
             "of M0's weights, in bf16 on a GPU (the student skips its removed blocks; the teacher runs every block "
             "with the adapter off); a LoRA student folder holds the adapter; `python -m models.export` merges it "
             "(default: off, every trainable weight, as the paper)")


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


# Per model: the settings a user of the paper expects, on top of the model's reward and prompt files
# (RUN_DEFAULTS). The real models take the paper's (Sec. 4.1: beta 5000, lr 6e-6, batch 2, 2 epochs,
# w_sft 1e4 / 1e6); tiny and toy are small and fast so the whole loop runs on a CPU. `blocks`: one
# count for every stage, or a list with one per stage.
TRAINING = {
    # AnimateDiff's schedule is inferred from Table 1's Param column, 0.453B -> 0.309 -> 0.219 -> 0.147:
    # the adapter's 21 motion modules are 11 of 36.1M, 5 of 9.0M and 5 of 2.3M parameters, and
    # 4, 4, 2 modules (4 large; 2 large + 2 medium; 2 large) reach those numbers, while Sec. 4.1's
    # "4 per stage" cannot (no 12 modules leave 0.147B). tests/test_schedule.py checks both.
    # The paper's batch of 2 pairs per step as 1 pair x 2 micro-steps (the same gradient), with gradient
    # checkpointing: 33 GiB of an 80 GB GPU, where 2 pairs at once at 16 x 512 x 512 take 51 GiB (docs/memory).
    "animatediff": dict(stages=3, blocks=[4, 4, 2], beta=5000.0, w_sft=1e4, lr=6e-6, batch=1, grad_accum=2,
                        gradient_checkpointing=True, epochs=2, tau=2.0, eval_prompts=None, pool_prompts=2000, seeds=1),
    # VideoCrafter2's prunable blocks are single residual layers (models/videocrafter2.py), finer than the
    # paper's U-Net blocks: 7 of them per stage remove about the paper's 0.239B, then 0.272B (4 reach <= 0.144B).
    # Gradient checkpointing on: one step at 16 x 320 x 512 needs it to fit 80 GB (docs/memory).
    "videocrafter2": dict(stages=2, blocks=7, beta=5000.0, w_sft=1e6, lr=6e-6, batch=2, grad_accum=1,
                          gradient_checkpointing=True, epochs=2, tau=2.0, eval_prompts=None, pool_prompts=2000, seeds=1),
    "tiny": dict(stages=2, blocks=2, beta=5000.0, w_sft=1e4, lr=1e-4, batch=2, grad_accum=1,
                 epochs=1, tau=0.0, eval_prompts=2, pool_prompts=8, seeds=1),
}
TRAINING["tiny-videocrafter2"] = dict(TRAINING["tiny"], w_sft=1e6)
# Wan2.1-T2V-1.3B (models/wan.py): 30 transformer blocks of 46.4M parameters, 97.9% of its 1.419B. The
# paper's other whole-denoiser model, VideoCrafter2, lost 16.9% then 36.2% over two stages (Table 1:
# 1.413 -> 1.174 -> 0.902B); 5 then 6 blocks give Wan -16.4% then -36.0% (1.419 -> 1.187 -> 0.908B).
# w_sft: the paper gives none for Wan, so its rule sets it ("auto": scale matching, redpo.settle_w_sft).
# Gradient checkpointing on: one step at 81 x 480 x 832 needs it to fit 80 GB (docs/memory).
TRAINING["wan"] = dict(TRAINING["videocrafter2"], blocks=[5, 6], w_sft="auto", gradient_checkpointing=True)
TRAINING["tiny-wan"] = dict(TRAINING["tiny"], w_sft=1e6, gradient_checkpointing=True)
# The toy world (toy/shapes_world.py): all 18 held-out prompts for pruning and evaluation, all 72
# training prompts as the curation pool, unfiltered (RUN_DEFAULTS names the files). Three stages
# cutting 2, 2, 1 of the 10 motion modules: the paper's AnimateDiff schedule 4, 4, 2 (of 21) at half
# scale. Not the paper's -67.5% of the motion-module parameters (5 of 10 modules remove -85.8% here):
# two of the modules the block search takes first cost the toy teacher nothing, so a schedule of 4
# modules would leave a stage cutting only a dead module (pilots on the training prompts,
# docs/shapes/README.md).
TRAINING["toy"] = dict(stages=3, blocks=[2, 2, 1], beta=5000.0, w_sft="auto", lr=1e-4, batch=4, grad_accum=1,
                       epochs=2, tau=0.0, eval_prompts=None, pool_prompts=None, seeds=1)
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
# true by construction; w_sft by the paper's rule ("auto", redpo.W_SFT_BATCHES).
EVALUATION["toy"] = dict(eval_seeds=4, search_seeds=1, steps=10, gen_batch=8,
                         search_prompts=os.path.join(ROOT, "toy", "search_prompts.txt"))
PRESETS = {name: dict(for_model(name), **training, **EVALUATION[name]) for name, training in TRAINING.items()}


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
