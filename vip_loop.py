"""V.I.P.: iterative online preference distillation (paper Sec. 3.4.2, Fig. 3).

For stage k = 1..K, with the full teacher M0 fixed and the student updated:

    M_{k-1}' --prune.py (Sec. 3.2)--> M_k, target properties     (stage_k/prune.json, pruned/)
    M_k  --evaluate.py-->             the pruned row of Table 1   (stage_k/eval_pruned.json)
    M0, M_k --curate.py (Sec. 3.3)--> winner/loser pairs          (stage_k/pairs/)
    M_k, M0, pairs --redpo.py (3.4.1)--> M_k'                     (stage_k/train/, student/)
    M_k' --evaluate.py-->             the trained row             (stage_k/eval.json, DONE)

and finally report.md (report.write_report) with the full model, each stage pruned and trained.

    python vip_loop.py                                     # the toy world (the embedded default)
    python vip_loop.py --model tiny --reward pixel --stages 2 --blocks 2 --out runs/tiny
    python vip_loop.py --model tiny --reward pixel --stages 3 --blocks 2 2 1     # one count per stage
    torchrun --nproc_per_node 2 vip_loop.py --model tiny --reward pixel
    torchrun --nproc_per_node 8 vip_loop.py --model animatediff   # the paper's settings

Models are loaded once per run and every step is called in-process. Each step's output is
written atomically and last, so re-running the same command skips what is done and resumes
training from its last checkpoint. `--oneshot` is Table 4's "w/o online": every stage's blocks
cut at once and one round of training; `--method sft|dpo` are Table 3 / Table 4's baselines.
"""
import argparse
import math
import os
import shutil
import sys
import time

import runtime  # before curate, numpy and torch: it sets how torch's CPU threads wait (runtime.py)
import curate
import defaults
import evaluate
import models
import prune
import redpo
import report
from prompt_files import read_prompts
from rewards import DIMENSIONS, VIDEOSCORE_DTYPES, load_reward
from runtime import UserError

# Per model: the settings a user of the paper expects, on top of the model's reward and prompt files
# (defaults.py). The real models take the paper's (Sec. 4.1: beta 5000, lr 6e-6, batch 2, 2 epochs,
# w_sft 1e4 / 1e6); tiny and toy are small and fast so the whole loop runs on a CPU. `blocks`: one
# count for every stage, or a list with one per stage.
TRAINING = {
    # AnimateDiff's schedule is inferred from Table 1's Param column, 0.453B -> 0.309 -> 0.219 -> 0.147:
    # the adapter's 21 motion modules are 11 of 36.1M, 5 of 9.0M and 5 of 2.3M parameters, and
    # 4, 4, 2 modules (4 large; 2 large + 2 medium; 2 large) reach those numbers, while Sec. 4.1's
    # "4 per stage" cannot (no 12 modules leave 0.147B). tests/test_schedule.py checks both.
    "animatediff": dict(stages=3, blocks=[4, 4, 2], beta=5000.0, w_sft=1e4, lr=6e-6, batch=2,
                        epochs=2, tau=2.0, eval_prompts=None, pool_prompts=2000, seeds=1),
    # VideoCrafter2's prunable blocks are single residual layers (models/videocrafter2.py), finer than the
    # paper's U-Net blocks: 7 of them per stage remove about the paper's 0.239B, then 0.272B (4 reach <= 0.144B).
    "videocrafter2": dict(stages=2, blocks=7, beta=5000.0, w_sft=1e6, lr=6e-6, batch=2,
                          epochs=2, tau=2.0, eval_prompts=None, pool_prompts=2000, seeds=1),
    "tiny": dict(stages=2, blocks=2, beta=5000.0, w_sft=1e4, lr=1e-4, batch=2,
                 epochs=1, tau=0.0, eval_prompts=2, pool_prompts=8, seeds=1),
}
TRAINING["tiny-videocrafter2"] = dict(TRAINING["tiny"], w_sft=1e6)
# The toy world (toy/shapes_world.py): all 18 held-out prompts for pruning and evaluation, all 72
# training prompts as the curation pool, unfiltered (defaults.py names the files). Three stages
# cutting 2, 2, 1 of the 10 motion modules: the paper's AnimateDiff schedule 4, 4, 2 (of 21) at half
# scale. Not the paper's -67.5% of the motion-module parameters (5 of 10 modules remove -85.8% here):
# two of the four modules the block search takes first cost the toy teacher nothing, so 4 modules
# (2, 1, 1: -65.6%) left stage 2 cutting only a dead module, not measurably harmful; measured on the
# training prompts (README, "How the settings were chosen").
TRAINING["toy"] = dict(stages=3, blocks=[2, 2, 1], beta=5000.0, w_sft="auto", lr=1e-4, batch=4,
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
# toy: 18 prompts x 4 seeds = 72 videos per row (a paired 95% interval of about +-0.01 on visual
# quality), the block search on the first seed (18 videos), DDIM with 10 steps instead of the
# teacher's 20 (held-out total 0.811 vs 0.821 over 36 clips; half the cost), 8 clips a generate
# call (14% faster than 4 on one CPU thread, the same uint8 clips), so that the default run stays
# within 10 minutes on 2 cores.
# The toy's block search and targets use 18 training prompts (toy/search_prompts.txt: each held-out
# colour and shape with another motion), one seed each, so that no verdict on the held-out set is
# true by construction; w_sft by the paper's rule ("auto", redpo.W_SFT_BATCHES).
EVALUATION["toy"] = dict(eval_seeds=4, search_seeds=1, steps=10, gen_batch=8,
                         search_prompts=os.path.join(defaults.ROOT, "toy", "search_prompts.txt"))
PRESETS = {name: dict(defaults.for_model(name), **training, **EVALUATION[name]) for name, training in TRAINING.items()}
DEFAULT_MODEL = defaults.DEFAULT_MODEL

# What a resumed run must share with the run it resumes (the rest, e.g. --out, may differ).
CONFIG_KEYS = ("model", "path", "adapter", "reward", "reward_path", "reward_dtype", "method", "stages", "blocks",
               "oneshot", "greedy", "beta", "w_sft", "lr", "batch", "epochs", "grad_accum", "tau", "prompts", "pool",
               "eval_prompts", "pool_prompts", "seeds", "seed", "world", "eval_seeds", "search_seeds", "steps",
               "search_prompts")


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


def stage_plan(stages, blocks, oneshot):
    """Blocks to remove in each stage (blocks_per_stage), or one stage with all of them (--oneshot)."""
    counts = blocks_per_stage(stages, blocks)
    return [sum(counts)] if oneshot else counts


def curation_targets(record):
    """The properties to curate pairs for: prune.py's target properties (largest drop first). When
    pruning dropped no dimension on average, every measured dimension, least improved first, so
    that videos on which the teacher still wins can be paired."""
    if not record["target_fallback"]:
        return [d for d, _ in record["target_properties"]]
    full, pruned = record["full_scores"], record["pruned_scores"]
    # Not measured: NaN in prune_stage's record, null once read back from prune.json (a resumed run).
    measured = [d for d in DIMENSIONS if all(s.get(d) is not None and math.isfinite(s[d]) for s in (full, pruned))]
    return sorted(measured, key=lambda d: pruned[d] - full[d])


def as_current_config(old):
    """A config.json written before blocks became one count per stage and before reward_dtype, in
    today's terms: blocks N -> [N] * stages, and reward_dtype "bf16" (VideoScore then ran in bf16 on
    GPUs, where every real run scored; CPU runs used the pixel / shapes rewards, which have no dtype)."""
    old = dict(old)
    if isinstance(old.get("blocks"), int) and isinstance(old.get("stages"), int) and old["stages"] >= 1:
        old["blocks"] = [old["blocks"]] * old["stages"]
    old.setdefault("reward_dtype", "bf16")
    for key, value in (("eval_seeds", 1), ("search_seeds", None), ("steps", None), ("search_prompts", None)):
        old.setdefault(key, value)
    return old


def same_file(a, b):
    """Two paths to files with the same bytes (a prompt file seen from another clone of the repo)."""
    if not (isinstance(a, str) and isinstance(b, str) and os.path.isfile(a) and os.path.isfile(b)):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def check_config(run_dir, config):
    """Refuse to resume a run directory whose config.json differs from `config`."""
    path = os.path.join(run_dir, "config.json")
    if os.path.isfile(path):
        old = as_current_config(runtime.read_json(path))
        changed = [k for k in CONFIG_KEYS if old.get(k) != config.get(k) and not same_file(old.get(k), config.get(k))]
        if changed:
            raise UserError(
                f"{run_dir} holds a run with other settings ({', '.join(f'{k}: {old.get(k)!r} -> {config.get(k)!r}' for k in changed)}); "
                "re-run with the same flags to resume it, or pass another --out")


TIMES = {}   # seconds this process spent on each kind of work: generation, scoring, training


def timed(fn, kind):
    """fn, adding its wall time to TIMES[kind]."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[kind] = TIMES.get(kind, 0.0) + time.perf_counter() - start
    return wrapper


def load_model(cfg, path, device, adapter=None):
    """models.load with its generation timed."""
    model = models.load(cfg["model"], path=path, adapter=adapter, device=device)
    model.generate = timed(model.generate, "generation")
    return model


def make_eval_set(items, eval_seeds):
    """The eval set: every prompt with seeds j * 1000 + i (prompt i, j < eval_seeds), seed index
    first, so the first len(items) videos are seed index 0 (the block search's subset)."""
    videos = [(it, j * 1000 + i) for j in range(eval_seeds) for i, it in enumerate(items)]
    return {"prompts": [it["prompt"] for it, _ in videos], "seeds": [s for _, s in videos],
            "static": [it["static"] for it, _ in videos], "per_seed": len(items)}


def subset(eval_set, n):
    """The first n videos of an eval set (None: all of it)."""
    return eval_set if n is None else {k: v[:n] if isinstance(v, list) else v for k, v in eval_set.items()}


def done(path):
    return os.path.exists(path)


def stage_done(stage_dir):
    """DONE is written last; a stage whose eval files were deleted (to redo them) is entered again."""
    return all(done(os.path.join(stage_dir, f)) for f in ("DONE", "eval_pruned.json", "eval.json"))


def pairs_damage(pairs_dir):
    """Read back a pairs folder written before this process (pairs.jsonl, as many pairs as
    summary.json counts, then every latent, shared over the ranks): "<file> <what is wrong>" for the
    first that does not read, or None."""
    try:
        pairs = redpo.read_pairs(pairs_dir)
        count = runtime.read_json(os.path.join(pairs_dir, "summary.json"))["pairs"]
    except runtime.Unreadable as e:
        return f"{e.path} {e.problem}"
    if count != len(pairs):
        return f"{os.path.join(pairs_dir, 'pairs.jsonl')} holds {len(pairs)} of the {count} pairs that summary.json counts"
    bad = []
    for i, p in runtime.shard(pairs):
        for f in (p["winner"], p["loser"]):
            try:
                runtime.load_torch(f)
            except runtime.Unreadable as e:
                bad.append((i, f"{e.path} {e.problem}"))
    bad = runtime.gather(bad)
    return bad[0] if bad else None


def redo_hint(out, path):
    """What to delete so that re-running the same command makes `path` (a file of the run folder
    `out`) again, keeping everything it does not depend on; None for a file outside the run."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(out)).split(os.sep)
    again = "and re-run the same command"
    if rel[0] == "config.json":
        return f"delete it {again}: it is written again from the flags"
    if rel[0] == "full":
        return f"delete the folder {os.path.join(out, 'full')} {again}: the full model is evaluated again"
    if not (rel[0].startswith("stage_") and rel[0][6:].isdigit()):
        return None
    stage_dir, name = os.path.join(out, rel[0]), rel[-1]
    if len(rel) == 2 and (name.startswith("eval") or name.startswith("videos")):
        json_name = "eval" + os.path.splitext(name)[0][len("videos"):] + ".json" if name.startswith("videos") else name
        files = [os.path.join(stage_dir, json_name), evaluate.videos_path(os.path.join(stage_dir, json_name))]
        return f"delete {' and '.join(files)} {again}: that model is evaluated again"
    stages = sorted(int(d[6:]) for d in os.listdir(out) if d.startswith("stage_") and d[6:].isdigit())
    later = [os.path.join(out, f"stage_{j}") for j in stages if j >= int(rel[0][6:])]   # they build on it
    return (f"delete the folder{'s' if len(later) > 1 else ''} {', '.join(later)} {again}: "
            f"{'that stage is' if len(later) == 1 else 'those stages are'} redone, earlier ones are kept")


def evaluate_once(model, reward, eval_set, json_path, gen_kw, batch_size=4):
    """evaluate.py's eval.json for `model`, unless it is already there. Returns its scores."""
    if not done(json_path):
        result = evaluate.evaluate_model(model, reward, eval_set["prompts"], eval_set["seeds"],
                                         static=eval_set["static"], batch_size=batch_size, **gen_kw)
        evaluate.save_eval(result, json_path)
        runtime.barrier()
        return result["scores"]
    return runtime.read_json(json_path)["scores"]


def run_stage(k, n_blocks, stage_dir, teacher, student_path, full_scores, reward, eval_set, pool, cfg,
              cache_dir, gen_kw, student_eval, search_set=None):
    """One stage of Fig. 3 on the student saved at `student_path` (None: M0 itself), whose eval.json
    (the report's previous row) is `student_eval`. Each step is skipped when its output exists.
    search_set: --search_prompts' set, with "full": M0's eval.json on it (None: the search runs on the
    eval set). Returns the trained student's folder."""
    rank, _ = runtime.rank_world()
    prune_json, pruned_dir = os.path.join(stage_dir, "prune.json"), os.path.join(stage_dir, "pruned")
    pairs_dir, train_dir = os.path.join(stage_dir, "pairs"), os.path.join(stage_dir, "train")
    student_dir = os.path.join(stage_dir, "student")
    device = teacher.device

    # 1. Prune (Sec. 3.2): score each block's removal (on the search subset), cut the n_blocks least
    # harmful ones. The student as it is was generated for the previous row (not again); the pruned
    # model's eval set once, for the pruned row (eval_pruned.json) and its target properties: what
    # it lost against M0 on the whole eval set.
    if done(prune_json):
        record = runtime.read_json(prune_json)
        student = load_model(cfg, pruned_dir, device)
    else:
        student = load_model(cfg, student_path or cfg["path"], device, cfg["adapter"])
        search = subset(eval_set, cfg["search_seeds"] and cfg["search_seeds"] * eval_set["per_seed"])
        whole = (eval_set["prompts"], eval_set["seeds"], eval_set["static"])
        if search_set is not None:   # search and targets on prompts apart from the eval set
            full_search = runtime.read_json(search_set["full"])
            record = prune.prune_stage(student, full_search["scores"], reward, search_set["prompts"], search_set["seeds"],
                                       n_blocks, stage_dir, static=search_set["static"], greedy=cfg["greedy"],
                                       gen_kw=gen_kw, batch_size=cfg["gen_batch"], student_dir=pruned_dir,
                                       base_eval=full_search if student_path is None else None, row_set=whole)
        else:
            record = prune.prune_stage(student, full_scores, reward, search["prompts"], search["seeds"], n_blocks,
                                       stage_dir, static=search["static"], greedy=cfg["greedy"], gen_kw=gen_kw,
                                       batch_size=cfg["gen_batch"], student_dir=pruned_dir,
                                       base_eval=runtime.read_json(student_eval),
                                       target_set=whole if len(search["prompts"]) < len(eval_set["prompts"]) else None)
    targets = curation_targets(record)
    if rank == 0:
        print(f"stage {k}: removed {', '.join(record['removed'])}; target properties: "
              + ", ".join(f"{d} (drop {drop:+.3g})" for d, drop in record["target_properties"])
              + (f"; no dimension dropped, so pairs may come from any of {', '.join(targets)}"
                 if record["target_fallback"] else ""))

    # The pruned row of Table 1 (written by prune_stage; generated here only for a run made before it was).
    evaluate_once(student, reward, eval_set, os.path.join(stage_dir, "eval_pruned.json"), gen_kw, cfg["gen_batch"])

    # 2. Curate (Sec. 3.3): prompts that describe the targets, teacher winners, student losers.
    # Pairs from an earlier process that training still needs are read back first; damaged, they are made again.
    if done(os.path.join(pairs_dir, "pairs.jsonl")) and not done(os.path.join(student_dir, models.STUDENT_FILE)):
        damage = pairs_damage(pairs_dir)
        if damage and rank == 0:
            print(f"stage {k}: {damage}; curating the pairs again", file=sys.stderr)
            shutil.rmtree(pairs_dir)
        runtime.barrier()
    if not done(os.path.join(pairs_dir, "pairs.jsonl")):
        kept, counts = curate.select_prompts(pool, targets, cfg["filter_prompts"])
        if rank == 0:
            print(f"stage {k}: prompt filter " + " -> ".join(f"{name} {n}" for name, n in counts.items()))
        if not kept:
            raise UserError(f"the prompt filter kept no prompt of {cfg['pool']} for {', '.join(targets)}; "
                            "pass a larger --pool")
        kept = kept[:cfg["pool_prompts"]] if cfg["pool_prompts"] else kept
        curate.curate(teacher, student, reward, kept, list(range(cfg["seeds"])), targets, cfg["tau"], pairs_dir,
                      cache_dir, gen_kw, batch_size=cfg["gen_batch"], config=cfg)

    # 3. Train (Sec. 3.4.1): ReDPO (or the baseline), resuming from the last checkpoint.
    if not done(os.path.join(student_dir, models.STUDENT_FILE)):
        timed(redpo.train, "training")(student, teacher, pairs_dir, train_dir, method=cfg["method"], beta=cfg["beta"],
                    w_sft=cfg["w_sft"], lr=cfg["lr"], batch=cfg["batch"], epochs=cfg["epochs"],
                    grad_accum=cfg["grad_accum"], seed=cfg["seed"],
                    gradient_checkpointing=cfg["gradient_checkpointing"], log_w_sft_rule=True)
        if rank == 0:
            student.save(student_dir)
        runtime.barrier()
    else:
        student = load_model(cfg, student_dir, device)

    # The trained row of Table 1.
    evaluate_once(student, reward, eval_set, os.path.join(stage_dir, "eval.json"), gen_kw, cfg["gen_batch"])
    if rank == 0:
        w_sft_json = os.path.join(train_dir, "w_sft.json")   # the w_sft this stage trained with, and the rule's
        runtime.write_json(os.path.join(stage_dir, "DONE"), {"stage": k, "removed": record["removed"], "w_sft": (
            runtime.read_json(w_sft_json) if done(w_sft_json) else None)})
    runtime.barrier()
    return student_dir


def run(cfg, device):
    """The whole loop for a resolved configuration `cfg` (see parse_args)."""
    rank, _ = runtime.rank_world()
    out = cfg["out"]
    check_config(out, cfg)
    eval_items = read_prompts(cfg["prompts"])[:cfg["eval_prompts"] or None]
    pool = read_prompts(cfg["pool"])
    if not eval_items:
        raise UserError(f"no prompts in {cfg['prompts']}; pass an eval prompt file with --prompts")
    start = time.perf_counter()
    teacher = load_model(cfg, cfg["path"], device, cfg["adapter"])
    reward = load_reward(cfg["reward"], device=device, dtype=cfg["reward_dtype"],
                         **({"path": cfg["reward_path"]} if cfg["reward_path"] else {}))
    reward.score_fn = timed(reward.score_fn, "scoring")
    if rank == 0:
        runtime.hold_lock(out)   # one run at a time writes a folder
        if not os.path.isfile(os.path.join(out, "config.json")):
            runtime.write_json(os.path.join(out, "config.json"), cfg)  # only once the inputs read and the models load
    runtime.barrier()
    eval_set = make_eval_set(eval_items, cfg["eval_seeds"])
    gen_kw = {"steps": cfg["steps"]} if cfg["steps"] else {}

    # The full model's row, and the scores every stage's target properties are measured against.
    full_scores = evaluate_once(teacher, reward, eval_set, os.path.join(out, "full", "eval.json"), gen_kw,
                                cfg["gen_batch"])
    search_set = None
    if cfg["search_prompts"]:
        search_items = read_prompts(cfg["search_prompts"])
        if not search_items:
            raise UserError(f"no prompts in {cfg['search_prompts']}; pass a prompt file with --search_prompts")
        search_set = dict(make_eval_set(search_items, cfg["search_seeds"] or 1),
                          full=os.path.join(out, "full", "eval_search.json"))
        evaluate_once(teacher, reward, search_set, search_set["full"], gen_kw, cfg["gen_batch"])

    student_path, student_eval = None, os.path.join(out, "full", "eval.json")
    for k, n_blocks in enumerate(stage_plan(cfg["stages"], cfg["blocks"], cfg["oneshot"]), start=1):
        stage_dir = os.path.join(out, f"stage_{k}")
        if stage_done(stage_dir):
            if rank == 0:
                print(f"stage {k}: done, skipped")
            student_path, student_eval = os.path.join(stage_dir, "student"), os.path.join(stage_dir, "eval.json")
            continue
        student_path = run_stage(k, n_blocks, stage_dir, teacher, student_path, full_scores, reward,
                                 eval_set, pool, cfg, os.path.join(out, "teacher_cache"), gen_kw, student_eval,
                                 search_set)
        student_eval = os.path.join(stage_dir, "eval.json")

    if rank == 0:
        text = report.write_report([out], os.path.join(out, "report.md"))
        print("\n\n".join(part for part in text.split("\n\n## ") if part.startswith("Table 1")))
        print(f"wrote {os.path.join(out, 'report.md')}")
        total = time.perf_counter() - start
        spent = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(TIMES.items()))
        print(f"time: {total:.0f} s in this process ({spent}, other {total - sum(TIMES.values()):.0f} s)")
    runtime.barrier()


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="V.I.P. (Sec. 3.4.2): prune -> curate -> ReDPO -> evaluate, stage after stage.",
        epilog="Unset flags take the model's preset (PRESETS in vip_loop.py): the paper's settings for "
               "animatediff / videocrafter2, small fast ones for tiny / toy.")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"one of {', '.join(PRESETS)} (default: {DEFAULT_MODEL})")
    p.add_argument("--path", default=None, help="hub id or directory of the full model M0 (default: the model's)")
    p.add_argument("--adapter", default=None, help="AnimateDiff motion adapter (hub id or directory)")
    p.add_argument("--reward", default=None, help="rewards.py reward: videoscore, pixel, shapes")
    p.add_argument("--reward_path", default=None, help="VideoScore weights (hub id or dir; default: VideoScore-v1.1)")
    p.add_argument("--reward_dtype", "--reward-dtype", default="bf16", choices=sorted(VIDEOSCORE_DTYPES),
                   help="VideoScore's dtype (default: bf16, as the official inference on every device)")
    p.add_argument("--method", default="redpo", choices=redpo.METHODS)
    p.add_argument("--stages", type=int, default=None)
    p.add_argument("--blocks", type=int, nargs="+", default=None,
                   help="blocks removed per stage: one count for every stage, or one per stage (4 4 2)")
    p.add_argument("--oneshot", action="store_true", help="remove every stage's blocks at once, train once (Table 4)")
    p.add_argument("--greedy", action="store_true", help="re-score after each block removed (prune.py)")
    p.add_argument("--beta", type=float, default=None)
    p.add_argument("--w_sft", type=redpo.parse_w_sft, default=None,
                   help="SFT weight: a number, or auto (each stage: mean DPO / mean SFT on its first "
                   f"{redpo.W_SFT_BATCHES} batches at the initial student, the paper's rule; logged in "
                   "train/w_sft.json and metrics.jsonl); default: the preset's (animatediff 1e4, "
                   "videocrafter2 1e6, toy auto)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch", type=int, default=None, help="pairs per process per step")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--grad_accum", type=int, default=1)
    p.add_argument("--gradient_checkpointing", action="store_true", help="trade compute for memory in training")
    p.add_argument("--tau", type=float, default=None, help="minimum loser score tau_p (curate.py)")
    p.add_argument("--prompts", default=None, help="eval prompt file (default: the model's, defaults.py)")
    p.add_argument("--pool", default=None, help="prompt pool for curation (default: the model's, defaults.py)")
    p.add_argument("--eval_prompts", type=int, default=None, help="use the first N eval prompts")
    p.add_argument("--pool_prompts", type=int, default=None, help="curate at most N filtered prompts")
    p.add_argument("--seeds", type=int, default=None, help="videos per curation prompt")
    p.add_argument("--eval_seeds", type=int, default=None, help="videos per eval prompt (seeds 1000 j + i)")
    p.add_argument("--search_seeds", type=int, default=None,
                   help="of those, how many seeds per prompt the block search generates (default: the preset's)")
    p.add_argument("--search_prompts", default=None,
                   help="prompt file for the block search and the target properties, apart from the eval "
                   "set; none: the eval set, the paper's way (default: the preset's: toy/search_prompts.txt for toy, none for the others)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps in the loop (default: the model's)")
    p.add_argument("--gen_batch", "--gen-batch", type=int, default=None,
                   help="videos per generate call (default: the preset's; speed only)")
    p.add_argument("--seed", type=int, default=0, help="the training seed (pair order, t, eps); the eval set "
                   "does not depend on it, so runs with other seeds compare video by video")
    p.add_argument("--out", default=None, help="run directory (default: runs/<model>-<method>)")
    return p.parse_args(argv)


def resolve(args, world):
    """Flags over the model's preset -> the run's configuration (echoed to config.json)."""
    if args.model not in PRESETS:
        raise UserError(f"unknown model {args.model!r}: choose one of {', '.join(PRESETS)}")
    cfg = dict(PRESETS[args.model])
    cfg.update({k: v for k, v in vars(args).items() if v is not None or k not in cfg})
    cfg["oneshot"], cfg["greedy"], cfg["world"] = args.oneshot, args.greedy, world
    cfg["gradient_checkpointing"] = args.gradient_checkpointing
    cfg["out"] = args.out or os.path.join("runs", f"{args.model}-{args.method}" + ("-oneshot" if args.oneshot else ""))
    for key in ("stages", "batch", "epochs", "seeds", "eval_seeds", "gen_batch") + (
            ("search_seeds",) if cfg["search_seeds"] is not None else ()):
        if cfg[key] < 1:
            raise UserError(f"--{key} must be at least 1 (got {cfg[key]})")
    if args.blocks is None and isinstance(cfg["blocks"], list) and len(cfg["blocks"]) != cfg["stages"]:
        raise UserError(f"the {args.model} preset removes {' '.join(map(str, cfg['blocks']))} blocks in its "
                        f"{len(cfg['blocks'])} stages; with --stages {cfg['stages']} pass --blocks too "
                        "(one count for every stage, or one per stage)")
    cfg["blocks"] = blocks_per_stage(cfg["stages"], cfg["blocks"])
    if cfg["search_prompts"] in ("none", ""):   # the eval set, as the paper does
        cfg["search_prompts"] = None
    return cfg


def main(argv=None):
    args = parse_args(argv)
    _, world, device = runtime.dist_setup()
    cfg = resolve(args, world)
    try:
        run(cfg, device)
    except runtime.Unreadable as e:  # a damaged file of the run: name what to delete to redo it
        raise runtime.Unreadable(e.path, e.problem, redo_hint(cfg["out"], e.path) or e.fix) from e


if __name__ == "__main__":
    runtime.run_cli(main)
