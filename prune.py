"""Reward-guided block pruning and target properties (V.I.P. paper, Sec. 3.2).

    "we first evaluate the impact by removing each block individually using VideoScore's total
     score and select blocks that have minimal impact compared to the full model. Here, we
     identify the properties that show the performance drop relative to the full model as the
     target properties for recovery."

One stage, given the current student (M0 at stage 1, the trained M_{k-1}' later) and the full M0:
  1. generate the eval prompts with fixed seeds for the student as it is and once per block with
     that block skipped (`model.skip`: no copy, the model is bit-identical afterwards); the shared
     seeds give every candidate the same noise, so the scores differ only by the block (vip_loop
     passes the student's eval.json, the report's previous row, and it is not generated again);
  2. remove (`model.remove`, structurally) the `--blocks` blocks whose absence hurts the total
     score least (`--greedy`: remove one, re-score the rest, repeat; k searches instead of one,
     and it sees blocks that are harmless alone but not together);
  3. target properties: the dimensions on which the pruned model scores below M0 (the paper's
     yellow cells in Table 1), ranked by the size of the drop; curate.py builds pairs for them;
  4. write prune.json (every candidate's per-dimension scores, the chosen blocks, the targets,
     parameters, TFLOPs per denoising step, latency of one generation), the pruned model to
     pruned/ (curate.py's --student; after training, redpo.py's student/ starts the next stage)
     and its eval set, scored once for step 3, to eval_pruned.json (evaluate.py's format).

    python prune.py --out runs/toy/stage_1                  # the toy world: its reward and prompts (defaults.py)
    python prune.py --model tiny --reward pixel --blocks 2 --out runs/x/stage_1
    python prune.py --model tiny --student runs/x/stage_1/student --reward pixel --out runs/x/stage_2
    torchrun --nproc_per_node 2 --standalone prune.py --model tiny --reward pixel --out runs/x/stage_1
    python prune.py --model animatediff --reward videoscore --blocks 4 --out runs/ad/stage_1

Generation and scoring are sharded over torchrun ranks in fixed batches (the same batches for
any number of ranks, so the scores do not depend on it) and gathered; rank 0 decides and writes,
and every rank returns the same result.
"""
import argparse
import dataclasses
import os

from infra import cli, cost, disk, generation, ranks
from infra.cli import UserError
from infra.prompt_files import make_eval_set, make_search_set, read_prompts

import numpy as np

import defaults
import evaluate
import models
from rewards import DIMENSIONS, VIDEOSCORE_DTYPES, load_reward_beside, per_video

BASE = "(none)"  # the candidate that skips nothing: the current student as it is
KEEP_VIDEOS = 4  # videos of the pruned row kept for the report's grids (evaluate_model's default)


def prune_stage(model, search, k, out_dir, greedy=False, student_dir=None):
    """Sec. 3.2 on `model`, in place: score each block's removal, remove the k least important,
    find the target properties. `search`: the videos the stage generates (a `SearchSet`).

    Every rank removes the same blocks (rank 0's choice, broadcast); rank 0 writes the pruned model
    to student_dir (default out_dir/pruned/), the pruned row to out_dir/eval_pruned.json and
    out_dir/prune.json (each atomically, prune.json last). Returns prune.json's content (NaN where
    the JSON has null) on every rank.
    """
    check_k(k, len(model.blocks()))
    videos = SearchVideos(model, search, one_per_round=greedy or k == 1)   # reuses the videos already scored
    before = cost_before_cut(model, search, videos)                         # parameters, TFLOPs, latency
    rounds = []
    for _ in range(k if greedy else 1):
        # 1. Importance: for each block, skip it, generate the search set (same seeds), score the videos.
        scores = block_importance(model, videos)
        # 2. Remove the blocks whose absence costs the total score least (greedy: one per round, re-scored).
        removed = ranks.broadcast(choose_blocks(scores, 1 if greedy else k))  # rank 0 decides
        rounds.append(round_record(scores, removed, before["blocks"]))
        videos.keep_pruned(scores, removed)   # one block a round: that candidate's videos are the pruned model's
        model.remove(removed)
    # 3. Target properties: the dimensions on which the pruned model scores below the full model M0.
    full = rounds[0]["base"] if search.full_scores is None else flat_means(search.full_scores)
    pruned = videos.pruned_scores(model)
    targets = target_properties(pruned, full)
    return write_stage(model, videos, before, stage_record(rounds, full, pruned, targets, greedy), out_dir, student_dir)


def block_importance(model, videos, blocks=None):
    """Sec. 3.2's importance of each block (default: every block left): skip it, generate the search
    set from its seeds (the same noise for every candidate, so the scores differ only by the block),
    score every video. The model as it is, BASE, too, unless its scores are known (videos.base).

    Returns {"base": {key: mean}, "candidates": {block: {key: mean}}, "per_video": {candidate: {key:
    [one float per video]}}}, the same on every rank, and "kept": {candidate: [(i, uint8 video)]}
    for videos i < videos.keep_videos, this rank's share only (ranks.gather it).
    """
    def skip_generate_score(block, prompts, seeds, static):    # one fixed batch of the search set
        with model.skip([] if block == BASE else [block]):   # identity on this thread only, restored exactly on exit
            frames, _ = model.generate(prompts, seeds, **videos.gen_kw)  # (B, F, H, W, 3) uint8
        return per_video(videos.reward(frames, prompts, static=static), len(prompts)), frames

    return videos.each_candidate(model, skip_generate_score, list(model.blocks()) if blocks is None else list(blocks))


def check_k(k, n_blocks):
    if not 1 <= k <= n_blocks:
        raise UserError(f"cannot remove {k} blocks: the model has {n_blocks} left; "
                        f"pass --blocks between 1 and {n_blocks}")


def choose_blocks(scores, k):
    """The k candidates whose removal leaves the highest total score (the least harm); ties keep
    the block order. `scores`: block_importance's result."""
    candidates = list(scores["candidates"])
    check_k(k, len(candidates))
    order = sorted(range(len(candidates)), key=lambda i: (-scores["candidates"][candidates[i]]["total"], i))
    return [candidates[i] for i in order[:k]]


def target_properties(pruned_scores, full_scores, dims=DIMENSIONS):
    """The dimensions on which the pruned model scores below the full model M0, as (dim, drop)
    with drop = S_full - S_pruned > 0, largest drop first. If none dropped, the one dimension
    with the smallest margin (its drop <= 0), so that the stage still has a target. Dimensions
    the reward does not measure (NaN, e.g. the pixel proxy's text_alignment) are left out."""
    drops = [(d, float(full_scores[d] - pruned_scores[d])) for d in dims]
    drops = [(d, drop) for d, drop in drops if np.isfinite(drop)]
    if not drops:
        raise ValueError(f"the reward measured none of {', '.join(dims)}")
    dropped = sorted([(d, drop) for d, drop in drops if drop > 0], key=lambda d_drop: -d_drop[1])
    if dropped:
        return dropped
    return [max(drops, key=lambda d_drop: d_drop[1])]


def round_record(scores, removed, block_params):
    """One round for prune.json: the model as it is, every candidate with its drop and size, the
    blocks removed."""
    return {"base": scores["base"], "candidates": [
        {"block": b, "scores": means, "drop": scores["base"]["total"] - means["total"], "params": block_params[b]}
        for b, means in scores["candidates"].items()], "chosen": removed}


def stage_record(rounds, full, pruned, targets, greedy):
    """prune.json's decisions: every round's candidates, the blocks removed, the target properties.
    write_stage adds what was generated, the parameters, TFLOPs and latency."""
    return {"full_scores": full, "base_scores": rounds[0]["base"], "candidates": rounds[0]["candidates"],
            "rounds": rounds if greedy else None, "removed": [b for rnd in rounds for b in rnd["chosen"]],
            "pruned_scores": pruned, "target_properties": [[d, drop] for d, drop in targets],
            "target_fallback": targets[0][1] <= 0}


# ---------------------------------------------------------------------------------------------
# The videos behind the three steps: which set, generated once, sharded over ranks
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SearchSet:
    """The videos a pruning stage generates and scores, and how.

    reward, prompts, seeds, static: the search set (static: True / False / None per prompt).
    full_scores: M0's mean scores on the same videos ({dim: mean}, or eval.json's "scores"); None
    when the model pruned is M0 itself (stage 1: its own base scores are the full model's).
    target_set: (prompts, seeds, static) on which the pruned row and its target properties are
    measured instead, a larger set than the search's (full_scores are then M0's on it). row_set:
    (prompts, seeds, static) of the pruned row only, apart from the search set, whose targets are
    then chosen on the search set (vip_loop --search_prompts: no verdict is computed on the data
    that chose what it tests). base_eval: an eval.json of the model as it is (vip_loop: the
    report's previous row), used instead of generating when it holds the same videos.
    """
    reward: object
    prompts: list
    seeds: list
    static: list = None
    full_scores: dict = None
    gen_kw: dict = None
    batch_size: int = 4
    progress: bool = True
    base_eval: dict = None
    target_set: tuple = None
    row_set: tuple = None

    def __post_init__(self):
        if len(self.prompts) == 0:
            raise UserError("no eval prompts: pass a --prompts file with at least one prompt")
        if len(self.prompts) != len(self.seeds):
            raise ValueError(f"{len(self.prompts)} prompts but {len(self.seeds)} seeds")

    def subset(self, idx):
        """(prompts, seeds, static) of the videos at indices idx."""
        return ([self.prompts[i] for i in idx], [self.seeds[i] for i in idx],
                None if self.static is None else [self.static[i] for i in idx])

    def videos(self):
        """(prompts, seeds, static) of the whole search set."""
        return self.prompts, self.seeds, self.static


class SearchVideos:
    """One stage's videos around the paper's steps: each (model state, prompt, seed) generated once,
    in fixed batches shared over the ranks and their threads (infra/generation.py).

    The base candidate "(none)" is the model as it is: its per-video scores (`base`) come from the
    search's base_eval when reusable_scores accepts it, else the search generates it. With one
    block per round (greedy, or k == 1) the pruned model is the chosen candidate: skipping ==
    removing, bit for bit, so its search videos and scores are its own (`known`, {(prompt, seed):
    (scores, uint8 video or None)}), and they are the next round's base.
    """

    def __init__(self, model, search, one_per_round=False):
        self.search, self.one_per_round = search, one_per_round
        self.reward, self.gen_kw = search.reward, search.gen_kw or {}
        self.base = reusable_scores(search.base_eval, model, search)
        self.keys = [(p, int(s)) for p, s in zip(search.prompts, search.seeds)]
        self.keep_videos = KEEP_VIDEOS if one_per_round else 0
        self.known, self.pruned_eval = {}, None

    def each_candidate(self, model, fn, blocks):
        """fn(candidate, prompts, seeds, static) -> ([{key: float} per video], uint8 videos) on each
        fixed batch of the search set, for BASE (unless `base` is known) and each block: block_importance's result."""
        search = self.search
        candidates = ([] if self.base is not None else [BASE]) + blocks
        jobs = [(c, idx) for c in candidates for idx in generation.batches(len(search.prompts), search.batch_size)]

        def run_job(job):
            candidate, idx = job
            scores, frames = fn(candidate, *search.subset(idx))
            return scores, [(i, f) for i, f in zip(idx, frames) if i < self.keep_videos]

        mine, kept = [], {}
        for _, done in generation.rounds(run_job, jobs, [model], "prune: candidates", search.progress):
            for j, (scores, videos) in done:
                mine.append((j, scores))
                kept.setdefault(jobs[j][0], []).extend(videos)
        per_video = {c: {} for c in candidates}
        for (candidate, _), scores in zip(jobs, ranks.gather(mine)):   # job order on every rank
            for key in scores[0]:
                per_video[candidate].setdefault(key, []).extend(v[key] for v in scores)
        if self.base is not None:
            per_video = {BASE: self.base, **per_video}
        means = {c: mean_scores(v) for c, v in per_video.items()}
        return {"base": means[BASE], "candidates": {b: means[b] for b in blocks}, "per_video": per_video,
                "kept": kept}

    def keep_pruned(self, scores, removed):
        """After a round: with one block per round the chosen candidate's videos (block_importance's
        `scores`) are the pruned model's, and the next round's base."""
        if self.one_per_round:
            self.base, kept = scores["per_video"][removed[0]], ranks.gather(scores["kept"].get(removed[0], []))
            self.known = {key: ({name: v[i] for name, v in self.base.items()}, kept[i] if i < len(kept) else None)
                          for i, key in enumerate(self.keys)}

    def pruned_scores(self, model):
        """The pruned model's mean scores where its targets are chosen (the target set, or the search
        set when the pruned row has a set of its own); its eval.json row on its set is kept as pruned_eval."""
        search = self.search
        if search.row_set is not None:
            on_search = evaluate_rest(model, search, search.videos(), self.known)
            self.pruned_eval = evaluate_rest(model, search, search.row_set, {})
            return flat_means(on_search["scores"])
        self.pruned_eval = evaluate_rest(model, search, search.target_set or search.videos(), self.known)
        return flat_means(self.pruned_eval["scores"])


def write_stage(model, videos, before, decisions, out_dir, student_dir):
    """prune.json (decisions, the search set, parameters, TFLOPs, latency), the pruned model and its
    eval row (videos.pruned_eval), written by rank 0; every rank returns the same record."""
    search = videos.search
    record = {"model": model.name, "greedy": decisions["rounds"] is not None,
              "eval": {"prompts": list(search.prompts), "seeds": [int(x) for x in search.seeds],
                       "gen_kw": search.gen_kw or {}},
              "target_videos": len(search.prompts) if search.target_set is None else len(search.target_set[0]),
              **{k: decisions[k] for k in ("full_scores", "base_scores", "candidates", "rounds", "removed")},
              "all_removed": list(model.removed),
              **{k: decisions[k] for k in ("pruned_scores", "target_properties", "target_fallback")},
              "num_parameters": {"before": before["params"], "after": model.num_parameters()},
              "removed_parameters": sum(before["blocks"][b] for b in decisions["removed"]),
              "tflops_per_step": None, "latency_s": None}
    if ranks.rank_world()[0] == 0:  # measured once, on rank 0; the broadcast gives every rank the same record
        record["tflops_per_step"] = {"before": before["tflops"], "after": per_step(videos.pruned_eval["tflops"])}
        record["latency_s"] = {"before": before["latency"],
                               "after": videos.pruned_eval["latency"]["seconds_per_video"]}
        model.save(student_dir or os.path.join(out_dir, "pruned"))
        evaluate.save_eval(videos.pruned_eval, os.path.join(out_dir, "eval_pruned.json"))
        disk.write_json(os.path.join(out_dir, "prune.json"), disk.json_safe(record))  # NaN -> null
    ranks.barrier()
    return ranks.broadcast(record)


def mean_scores(per_video_scores):
    """dict key -> list of per-video floats  ->  dict key -> mean."""
    return {key: float(np.mean(values)) for key, values in per_video_scores.items()}


def reusable_scores(eval_result, model, search):
    """The per-video scores of `model` as it is on the search set, {key: [one float per prompt]},
    read from an eval.json of it (evaluate.py's result; vip_loop passes the report's previous row,
    the same weights). Only when that json holds every (prompt, seed) with the same static label,
    scored by the same reward, at the same sampler settings and number of removed blocks; else
    None, and the caller generates. JSON null (a dimension the reward does not measure) becomes NaN."""
    if eval_result is None:
        return None
    if (eval_result.get("model") != model.name or eval_result.get("reward") != getattr(search.reward, "name", "custom")
            or eval_result.get("generation") != generation.generation_settings(model, search.gen_kw)
            or eval_result["params"]["removed_blocks"] != len(model.removed)):
        return None
    by_item = {(v["prompt"], v["seed"]): v for v in eval_result["per_video"]}
    rows = [by_item.get((p, int(seed))) for p, seed in zip(search.prompts, search.seeds)]
    labels = [None] * len(search.prompts) if search.static is None else search.static
    if not rows or any(row is None or row["static"] != label for row, label in zip(rows, labels)):
        return None
    return {k: [float("nan") if row["scores"][k] is None else row["scores"][k] for row in rows] for k in rows[0]["scores"]}


def evaluate_rest(model, search, videos, known):
    """evaluate_model's result with its cost on `videos` ((prompts, seeds, static)), generating only
    the (prompt, seed) not in `known` ({(prompt, seed): (scores, uint8 video or None)}, videos of the
    same model already scored): so each (model, prompt, seed) is generated once. Videos kept: the first
    KEEP_VIDEOS of the set."""
    prompts, seeds, static = videos
    static = [None] * len(prompts) if static is None else list(static)
    gen_kw = search.gen_kw or {}
    todo = [i for i, (p, seed) in enumerate(zip(prompts, seeds)) if (p, int(seed)) not in known]
    part = {"per_video": [], "videos": {"frames": None}}
    if todo:
        part = evaluate.evaluate_model(model, search.reward, ([prompts[i] for i in todo], [seeds[i] for i in todo],
                                       [static[i] for i in todo]), keep_videos=sum(i < KEEP_VIDEOS for i in todo),
                                       batch_size=search.batch_size, **gen_kw)
    made = dict(zip(todo, part["per_video"]))
    frames = part["videos"]["frames"]
    made_videos = dict(zip([i for i in todo if i < KEEP_VIDEOS], [] if frames is None else frames))
    rows, kept = [], []
    for i, (p, seed, label) in enumerate(zip(prompts, seeds, static)):
        scores, video = known.get((p, int(seed)), (None, None))
        rows.append(made[i] if i in made else {"prompt": p, "seed": int(seed), "static": label, "scores": scores})
        kept.append(made_videos.get(i, video) if i < KEEP_VIDEOS else None)
    return evaluate.with_cost(evaluate.eval_result(model, search.reward, rows, kept, **gen_kw), model, **gen_kw)


# ---------------------------------------------------------------------------------------------
# Cost before and after the cut: parameters, TFLOPs per denoising step, latency of one generation
# ---------------------------------------------------------------------------------------------

def cost_before_cut(model, search, videos):
    """The model as it is: parameters (all, and per block) and, measured on rank 0, TFLOPs per
    denoising step and the latency of one video (base_eval's when its videos were reused: the same model)."""
    rank = ranks.rank_world()[0]
    reused = search.base_eval if videos.base is not None else {}
    before = {"params": model.num_parameters(), "blocks": cost.block_sizes(model),
              "tflops": per_step(reused["tflops"]) if "tflops" in reused else None,
              "latency": reused.get("latency", {}).get("seconds_per_video")}
    if before["tflops"] is None and rank == 0:
        g = generation.sampler_settings(model, search.gen_kw)
        before["tflops"] = per_step(cost.measure_tflops(model, g["num_frames"], g["height"], g["width"], 1,
                                                        g["guidance"]))
    if before["latency"] is None and rank == 0:
        before["latency"] = cost.measure_latency(model, search.prompts[0], search.seeds[0], **(search.gen_kw or {}))
    return before


def per_step(tflops):
    """TFLOPs of one denoising step from a generation's (cost.measure_tflops): the denoiser forward,
    twice under classifier-free guidance."""
    return tflops["unet_forward_tflops"] * tflops["cfg_factor"]


def flat_means(scores):
    """{dim: mean} from either that or evaluate.py's eval.json "scores" ({dim: {"mean", ...}});
    a JSON null (a dimension the reward does not measure) becomes NaN."""
    means = {k: v["mean"] if isinstance(v, dict) else v for k, v in scores.items()}
    return {k: float("nan") if v is None else v for k, v in means.items()}


def summary_lines(record):
    """What a reader wants on screen after a stage."""
    base = record["base_scores"]["total"]
    lines = [f"{'skipped block':40s} {'total':>9s} {'drop':>9s}"]
    lines += [f"{BASE:40s} {base:9.4f} {0:9.4f}"]
    for c in record["candidates"]:
        mark = "  <- removed" if c["block"] in record["removed"] else ""
        lines.append(f"{c['block']:40s} {c['scores']['total']:9.4f} {c['drop']:9.4f}{mark}")
    for i, rnd in enumerate(record["rounds"] or []):  # greedy: the later choices were made on re-scored models
        after = next(c["scores"]["total"] for c in rnd["candidates"] if c["block"] == rnd["chosen"][0])
        lines.append(f"greedy round {i + 1}: removed {rnd['chosen'][0]} (total {rnd['base']['total']:.4f} -> {after:.4f})")
    p, t = record["num_parameters"], record["tflops_per_step"]
    lines.append(f"removed {record['removed']}: parameters {p['before']['total']:,} -> {p['after']['total']:,}, "
                 f"TFLOPs/step {t['before']:.4g} -> {t['after']:.4g}")
    if record["latency_s"]:
        lines.append(f"latency of one video: {record['latency_s']['before']:.2f}s -> {record['latency_s']['after']:.2f}s "
                     "(one timing each: on a shared CPU it varies by tens of percent; TFLOPs is the steady cost)")
    targets = ", ".join(f"{d} (-{drop:.4f})" for d, drop in record["target_properties"])
    if record["target_fallback"]:
        d, drop = record["target_properties"][0]
        lines.append(f"no dimension dropped below the full model; falling back to the smallest margin: "
                     f"{d} ({-drop:+.4f} above)")
    else:
        lines.append(f"target properties: {targets}")
    return lines


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

# The flags prune.py shares with vip_loop.py (defaults.FLAGS), besides --blocks, --student and --out.
FLAGS = ("model", "path", "adapter", "reward", "reward_path", "reward_dtype", "greedy", "prompts", "eval_prompts",
         "eval_seeds", "search_seeds", "search_prompts", "steps", "gen_batch", "lora")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="V.I.P. Sec. 3.2: reward-guided block pruning and target properties, "
                                "one stage; unset flags follow the model's preset, as vip_loop.py's stage 1.",
                                allow_abbrev=False)
    defaults.add_flags(p, FLAGS, models.DEFAULTS, reward_dtype={"choices": sorted(VIDEOSCORE_DTYPES)})
    p.add_argument("--student", default=None, help="the current student, a saved model folder (e.g. the "
                   "trained runs/x/stage_1/student; default, or 'none': M0 itself, stage 1)")
    p.add_argument("--blocks", type=int, default=None, help="blocks to remove in this stage (default: the loop's "
                   f"first stage: {defaults.per_model({m: defaults.first_stage_blocks(m) for m in defaults.PRESETS})})")
    p.add_argument("--out", default=None, help="stage folder: writes prune.json, eval_pruned.json and pruned/ "
                   "(default: runs/<model>-prune)")
    return p.parse_args(argv)


def resolve(args):
    """Flags over the model's preset: the settings of vip_loop.py's first stage (defaults.fill), with
    --blocks the stage's count, --out a folder and --student None for M0."""
    preset = defaults.fill(args)
    args.blocks = defaults.blocks_per_stage(preset["stages"], args.blocks)[0]   # unset: the preset's first stage
    args.out = args.out or os.path.join("runs", f"{args.model}-prune")
    args.student = None if args.student in ("", "none", "None") else args.student
    if args.student is not None and not os.path.isfile(os.path.join(args.student, models.STUDENT_FILE)):
        raise UserError(f"{args.student} is not a student folder (no {models.STUDENT_FILE}); "
                        "pass a model folder of an earlier stage, or none for M0")
    return args


def main(argv=None):
    args = resolve(parse_args(argv))
    disk.check_out(args.out)   # before any work
    rank, world, device = ranks.dist_setup()
    model = models.load(args.model, path=args.student or args.path, adapter=args.adapter, device=device,
                         lora_rank=args.lora)
    check_k(args.blocks, len(model.blocks()))  # before any generation
    reward = load_reward_beside(model, args.reward, device, path=args.reward_path, dtype=args.reward_dtype)
    search = stage_search(args, reward)
    if args.student is not None or search.target_set is not None:   # M0's scores where the targets are chosen
        full = (model if args.student is None else model.teacher() if model.lora   # a LoRA student's: its own weights
                else models.load(args.model, path=args.path, adapter=args.adapter, device=device))
        search.full_scores = full_model_scores(full, search)
        del full
    if rank == 0:
        print(f"prune: {args.model} with {len(model.blocks())} blocks, the search on {len(search.prompts)} videos "
              f"({'--search_prompts' if args.search_prompts else 'of the eval set'}), reward {args.reward}, "
              f"{world} rank(s), removing {args.blocks}{' greedily' if args.greedy else ''}")
    record = prune_stage(model, search, args.blocks, args.out, args.greedy)
    if rank == 0:
        print("\n".join(summary_lines(record)))
        print(f"wrote {os.path.join(args.out, 'prune.json')}, eval_pruned.json and {os.path.join(args.out, 'pruned')}")


def stage_search(args, reward):
    """The stage's videos, as vip_loop.py chooses them: with --search_prompts the search and the targets
    on those prompts (search seeds) and the pruned row on the eval set; else the search on the first
    --search_seeds seed indices of the eval set, the row and the targets on all of it."""
    items = read_prompts(args.prompts)[:args.eval_prompts]
    if not items:
        raise UserError(f"no eval prompts in {args.prompts}: pass a file with at least one prompt")
    eval_set = make_eval_set(items, args.eval_seeds)
    whole = (eval_set["prompts"], eval_set["seeds"], eval_set["static"])
    common = {"gen_kw": {"steps": args.steps} if args.steps else {}, "batch_size": args.gen_batch}
    if args.search_prompts:
        s = make_search_set(read_prompts(args.search_prompts), args.search_seeds or 1)
        return SearchSet(reward, s["prompts"], s["seeds"], s["static"], row_set=whole, **common)
    n = args.search_seeds * eval_set["per_seed"] if args.search_seeds else len(eval_set["prompts"])
    prompts, seeds, static = (v[:n] for v in whole)
    return SearchSet(reward, prompts, seeds, static, target_set=whole if n < len(whole[0]) else None, **common)


def full_model_scores(full, search):
    """M0's mean scores on the videos whose drop names the target properties: the target set, or the
    search set."""
    if search.target_set is not None:
        return evaluate.evaluate_model(full, search.reward, search.target_set, batch_size=search.batch_size,
                                       **search.gen_kw)["scores"]
    return block_importance(full, SearchVideos(full, search), blocks=[])["base"]


if __name__ == "__main__":
    cli.run_cli(main)
