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

from infra import cli, disk, parallel, ranks
from infra.cli import UserError
from infra.prompt_files import make_eval_set, read_prompts

import numpy as np
from tqdm import tqdm

import defaults
import evaluate
import models
from rewards import DIMENSIONS, load_reward

BASE = "(none)"  # the candidate that skips nothing: the current student as it is
KEEP_VIDEOS = 4  # videos of the pruned row kept for the report's grids (evaluate_model's default)


def prune_stage(model, search, k, out_dir, greedy=False, student_dir=None):
    """Sec. 3.2 on `model`, in place: score each block's removal, remove the k least important,
    find the target properties. `search`: the videos the stage generates (a `Search`).

    Every rank removes the same blocks (rank 0's choice, broadcast); rank 0 writes the pruned model
    to student_dir (default out_dir/pruned/), the pruned row to out_dir/eval_pruned.json and
    out_dir/prune.json (each atomically, prune.json last). Returns prune.json's content (NaN where
    the JSON has null) on every rank.
    """
    check_k(k, len(model.blocks()))
    stage = StageVideos(model, search, one_per_round=greedy or k == 1)   # reuse, costs before the cut
    rounds = []
    for _ in range(k if greedy else 1):
        # 1. Importance: the search set generated with each block skipped on its own (same seeds).
        scores = stage.ablate(model)
        # 2. Remove the blocks whose absence costs the total score least (greedy: one per round, re-scored).
        chosen = ranks.broadcast(choose_blocks(scores, 1 if greedy else k))  # rank 0 decides
        rounds.append(stage.chose(scores, chosen))
        model.remove(chosen)
    # 3. Target properties: the dimensions on which the pruned model scores below the full model M0.
    full = rounds[0]["base"] if search.full_scores is None else flat_means(search.full_scores)
    pruned = stage.pruned_scores(model)
    targets = target_properties(pruned, full)
    return stage.write(model, stage_record(rounds, full, pruned, targets, greedy), out_dir, student_dir)


def check_k(k, n_blocks):
    if not 1 <= k <= n_blocks:
        raise UserError(f"cannot remove {k} blocks: the model has {n_blocks} left; "
                        f"pass --blocks between 1 and {n_blocks}")


def choose_blocks(scores, k):
    """The k candidates whose removal leaves the highest total score (the least harm); ties keep
    the block order. `scores`: score_candidates' result."""
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
    drops = [dd for dd in drops if np.isfinite(dd[1])]
    if not drops:
        raise ValueError(f"the reward measured none of {', '.join(dims)}")
    dropped = sorted([dd for dd in drops if dd[1] > 0], key=lambda dd: -dd[1])
    if dropped:
        return dropped
    return [max(drops, key=lambda dd: dd[1])]


def stage_record(rounds, full, pruned, targets, greedy):
    """prune.json's decisions: every round's candidates, the blocks removed, the target properties.
    StageVideos.write adds what was generated, the parameters, TFLOPs and latency."""
    return {"full_scores": full, "base_scores": rounds[0]["base"], "candidates": rounds[0]["candidates"],
            "rounds": rounds if greedy else None, "removed": [b for r in rounds for b in r["chosen"]],
            "pruned_scores": pruned, "target_properties": [[d, drop] for d, drop in targets],
            "target_fallback": targets[0][1] <= 0}


# ---------------------------------------------------------------------------------------------
# The videos behind the three steps: which set, generated once, sharded over ranks
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Search:
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


class StageVideos:
    """One stage's generation around the paper's steps: each (model state, prompt, seed) is
    generated once, and the stage's cost is measured before and after the cut.

    The base candidate "(none)" is the model as it is: its per-video scores come from the search's
    base_eval when reusable_scores accepts it (then also its latency), else the search generates it.
    With one block per round (greedy, or k == 1) the pruned model is the chosen candidate: skipping
    == removing, bit for bit, so its search videos and scores are its own (`known`, {(prompt,
    seed): (scores, uint8 video or None)}), and they are the next round's base.
    """

    def __init__(self, model, search, one_per_round):
        self.search, self.one_per_round = search, one_per_round
        self.base = reusable_scores(search.base_eval, model, search)
        self.keys = [(p, int(s)) for p, s in zip(search.prompts, search.seeds)]
        self.keep_videos = KEEP_VIDEOS if one_per_round else 0
        self.known, self.pruned_eval = {}, None
        rank = ranks.rank_world()[0]
        self.before = {"params": model.num_parameters(), "blocks": block_sizes(model),
                       "tflops": step_tflops(model, search.gen_kw) if rank == 0 else None,
                       "latency": search.base_eval.get("latency", {}).get("seconds_per_video")
                       if self.base is not None else None}
        if self.before["latency"] is None and rank == 0:
            self.before["latency"] = measure_latency(model, search.prompts[0], search.seeds[0], search.gen_kw)

    def ablate(self, model):
        """Every block skipped on its own, and the model as it is: score_candidates' result."""
        return score_candidates(model, self.search, base=self.base, keep_videos=self.keep_videos)

    def chose(self, scores, chosen):
        """After a round: its record for prune.json; with one block per round the chosen
        candidate's videos are kept as the pruned model's."""
        record = {"base": scores["base"], "candidates": [
            {"block": b, "scores": s, "drop": scores["base"]["total"] - s["total"], "params": self.before["blocks"][b]}
            for b, s in scores["candidates"].items()], "chosen": chosen}
        if self.one_per_round:
            self.base, kept = scores["per_video"][chosen[0]], ranks.gather(scores["kept"].get(chosen[0], []))
            self.known = {key: ({name: v[i] for name, v in self.base.items()}, kept[i] if i < len(kept) else None)
                          for i, key in enumerate(self.keys)}
        return record

    def pruned_scores(self, model):
        """The pruned model's mean scores where its targets are chosen (the target set, or the search
        set when the pruned row has a set of its own), and its eval.json row on its set."""
        s = self.search
        if s.row_set is not None:
            on_search = evaluate_rest(model, s, (s.prompts, s.seeds, s.static), self.known)
            self.pruned_eval = evaluate_rest(model, s, s.row_set, {})
            return flat_means(on_search["scores"])
        self.pruned_eval = evaluate_rest(model, s, s.target_set or (s.prompts, s.seeds, s.static), self.known)
        return flat_means(self.pruned_eval["scores"])

    def write(self, model, decisions, out_dir, student_dir):
        """prune.json (decisions, the search set, parameters, TFLOPs, latency), the pruned model and
        its eval row, written by rank 0; every rank returns the same record."""
        s, before, d = self.search, self.before, decisions
        record = {"model": model.name, "greedy": d["rounds"] is not None,
                  "eval": {"prompts": list(s.prompts), "seeds": [int(x) for x in s.seeds], "gen_kw": s.gen_kw or {}},
                  "target_videos": len(s.prompts) if s.target_set is None else len(s.target_set[0]),
                  **{k: d[k] for k in ("full_scores", "base_scores", "candidates", "rounds", "removed")},
                  "all_removed": list(model.removed),
                  **{k: d[k] for k in ("pruned_scores", "target_properties", "target_fallback")},
                  "num_parameters": {"before": before["params"], "after": model.num_parameters()},
                  "removed_parameters": sum(before["blocks"][b] for b in d["removed"]),
                  "tflops_per_step": None, "latency_s": None}
        if ranks.rank_world()[0] == 0:  # measured once, on rank 0; the broadcast gives every rank the same record
            record["tflops_per_step"] = {"before": before["tflops"], "after": step_tflops(model, s.gen_kw)}
            record["latency_s"] = {"before": before["latency"],
                                   "after": self.pruned_eval["latency"]["seconds_per_video"]}
            model.save(student_dir or os.path.join(out_dir, "pruned"))
            evaluate.save_eval(self.pruned_eval, os.path.join(out_dir, "eval_pruned.json"))
            disk.write_json(os.path.join(out_dir, "prune.json"), disk.json_safe(record))  # NaN -> null
        ranks.barrier()
        return ranks.broadcast(record)


def batches(n, batch_size):
    """Index lists [0..b), [b..2b), ... covering range(n): fixed, whatever the number of ranks."""
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def score_videos(model, reward, prompts, seeds, static=None, gen_kw=None):
    """Generate one video per (prompt, seed) and score it: (dict key -> list of B floats, the
    uint8 videos (B, F, H, W, 3))."""
    frames, _ = model.generate(prompts, seeds, **(gen_kw or {}))  # (B, F, H, W, 3) uint8
    scores = reward(frames, prompts, static=static)
    out = {}
    for key, values in scores.items():
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if len(values) != len(prompts):
            raise ValueError(f"reward returned {len(values)} {key!r} scores for {len(prompts)} videos")
        out[key] = values.tolist()
    return out, frames


def mean_scores(per_video):
    """dict key -> list of per-video floats  ->  dict key -> mean."""
    return {key: float(np.mean(values)) for key, values in per_video.items()}


def score_candidates(model, search, blocks=None, base=None, keep_videos=0):
    """Score the model as it is and with each block in `blocks` (default: all) skipped on its own,
    on the search set (same seeds for every candidate).

    Returns {"base": {key: mean}, "candidates": {block: {key: mean}}, "per_video": {candidate:
    {key: [one float per prompt]}}}, the same on every rank, and "kept": {candidate: [(i, uint8
    video)]} for prompts i < keep_videos, this rank's share only (ranks.gather it).
    Costs (len(blocks) + 1) generations of the search set, sharded over the ranks in fixed batches
    (the same batches for any number of ranks) and run side by side on worker threads;
    len(blocks) when `base`, the model's per-video scores as it is (reusable_scores), stands in.
    """
    blocks = list(model.blocks()) if blocks is None else list(blocks)
    candidates = ([] if base is not None else [BASE]) + blocks
    jobs = [(c, idx) for c in candidates for idx in batches(len(search.prompts), search.batch_size)]
    rank, _ = ranks.rank_world()
    mine = ranks.shard(jobs)
    results, kept = [], {}

    def score(job):
        _, (candidate, idx) = job
        with model.skip([] if candidate == BASE else [candidate]):  # identity on this thread, restored exactly on exit
            return score_videos(model, search.reward, *search.subset(idx), search.gen_kw)

    bar = tqdm(mine, desc="prune: candidates", unit="batch", disable=not search.progress or rank != 0)
    for (j, (candidate, idx)), (s, frames) in zip(bar, parallel.map_batches(score, mine, model)):
        bar.set_postfix_str(candidate)
        results.append((j, s))
        kept.setdefault(candidate, []).extend((i, f) for i, f in zip(idx, frames) if i < keep_videos)
    gathered = ranks.gather(results)  # job order on every rank
    per_video = {c: {} for c in candidates}
    for (candidate, _), s in zip(jobs, gathered):
        for key, values in s.items():
            per_video[candidate].setdefault(key, []).extend(values)
    if base is not None:
        per_video = {BASE: base, **per_video}
    means = {c: mean_scores(v) for c, v in per_video.items()}
    return {"base": means[BASE], "candidates": {b: means[b] for b in blocks}, "per_video": per_video,
            "kept": kept}


def reusable_scores(eval_result, model, search):
    """The per-video scores of `model` as it is on the search set, {key: [one float per prompt]},
    read from an eval.json of it (evaluate.py's result; vip_loop passes the report's previous row,
    the same weights). Only when that json holds every (prompt, seed) with the same static label,
    scored by the same reward, at the same sampler settings and number of removed blocks; else
    None, and the caller generates. JSON null (a dimension the reward does not measure) becomes NaN."""
    if eval_result is None:
        return None
    if (eval_result.get("model") != model.name or eval_result.get("reward") != getattr(search.reward, "name", "custom")
            or eval_result.get("generation") != evaluate.generation_settings(model, **(search.gen_kw or {}))
            or eval_result["params"]["removed_blocks"] != len(model.removed)):
        return None
    by_item = {(v["prompt"], v["seed"]): v for v in eval_result["per_video"]}
    rows = [by_item.get((p, int(s))) for p, s in zip(search.prompts, search.seeds)]
    labels = [None] * len(search.prompts) if search.static is None else search.static
    if not rows or any(r is None or r["static"] != st for r, st in zip(rows, labels)):
        return None
    return {k: [float("nan") if r["scores"][k] is None else r["scores"][k] for r in rows] for k in rows[0]["scores"]}


def evaluate_rest(model, search, videos, known):
    """evaluate_model's result with its cost on `videos` ((prompts, seeds, static)), generating only
    the (prompt, seed) not in `known` ({(prompt, seed): (scores, uint8 video or None)}, videos of the
    same model already scored): so each (model, prompt, seed) is generated once. Videos kept: the first
    KEEP_VIDEOS of the set."""
    prompts, seeds, static = videos
    static = [None] * len(prompts) if static is None else list(static)
    gen_kw = search.gen_kw or {}
    todo = [i for i, (p, s) in enumerate(zip(prompts, seeds)) if (p, int(s)) not in known]
    part = {"per_video": [], "videos": {"frames": None}}
    if todo:
        part = evaluate.evaluate_model(model, search.reward, ([prompts[i] for i in todo], [seeds[i] for i in todo],
                                       [static[i] for i in todo]), keep_videos=sum(i < KEEP_VIDEOS for i in todo),
                                       batch_size=search.batch_size, **gen_kw)
    made = dict(zip(todo, part["per_video"]))
    frames = part["videos"]["frames"]
    made_videos = dict(zip([i for i in todo if i < KEEP_VIDEOS], [] if frames is None else frames))
    per_video, kept = [], []
    for i, (p, s, st) in enumerate(zip(prompts, seeds, static)):
        scores, video = known.get((p, int(s)), (None, None))
        per_video.append(made[i] if i in made else {"prompt": p, "seed": int(s), "static": st, "scores": scores})
        kept.append(made_videos.get(i, video) if i < KEEP_VIDEOS else None)
    return evaluate.with_cost(evaluate.eval_result(model, search.reward, per_video, kept, **gen_kw), model, **gen_kw)


# ---------------------------------------------------------------------------------------------
# Cost: parameters, TFLOPs per denoising step, latency of one generation
# ---------------------------------------------------------------------------------------------

def step_tflops(model, gen_kw=None):
    """TFLOPs of one denoising step: the denoiser forward, twice under classifier-free guidance."""
    g = evaluate.generation_settings(model, **(gen_kw or {}))
    return evaluate.measure_tflops(model, g["num_frames"], g["height"], g["width"], 1, g["guidance"])["tflops"]


def measure_latency(model, prompt, seed, gen_kw=None):
    """Seconds to generate one video at batch 1 (after a warm-up)."""
    return evaluate.measure_latency(model, prompt, seed, **(gen_kw or {}))


def block_sizes(model):
    """Parameters of each prunable block still in the model."""
    return {n: models.count_parameters(b) for n, b in model.blocks().items()}   # a LoRA student: as merged


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

def pick(items, n):
    """n items spread evenly over the list (deterministic), or all of them."""
    if n is None or n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="V.I.P. Sec. 3.2: reward-guided block pruning and target properties.")
    p.add_argument("--model", default=defaults.DEFAULT_MODEL, help=defaults.MODEL_HELP)
    p.add_argument("--path", default=None, help=defaults.PATH_HELP)
    p.add_argument("--adapter", default=None, help=defaults.ADAPTER_HELP)
    p.add_argument("--student", default=None, help="the current student, a saved model folder (e.g. the "
                   "trained runs/x/stage_1/student; default, or 'none': M0 itself, stage 1)")
    p.add_argument("--reward", default=None, help=defaults.REWARD_HELP)
    p.add_argument("--reward_path", default=None, help=defaults.REWARD_PATH_HELP)
    p.add_argument("--blocks", type=int, default=4, help="blocks to remove in this stage (default: 4, the paper's)")
    p.add_argument("--greedy", action="store_true",
                   help="re-score after each removal, k searches (default: off, one search)")
    p.add_argument("--prompts", default=None, help="eval prompts, .txt, .csv or .json with static labels (default: "
                   + defaults.run_default("prompts") + ")")
    p.add_argument("--num_prompts", type=int, default=32,
                   help="eval prompts used, spread evenly over the file (default: 32)")
    p.add_argument("--eval_seeds", type=int, default=1, help="videos per eval prompt: prompt i at seed index j has "
                   "seed 1000 j + i, as in vip_loop.py and evaluate.py (default: 1)")
    p.add_argument("--steps", type=int, default=None, help=defaults.steps_help(models.DEFAULTS))
    p.add_argument("--batch_size", type=int, default=4, help="videos per generate call, a speed setting (default: 4)")
    p.add_argument("--lora", type=int, default=None, metavar="RANK", help=defaults.LORA_HELP)
    p.add_argument("--out", required=True, help="stage folder: writes prune.json, eval_pruned.json and pruned/")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    disk.check_out(args.out)   # before any work
    defaults.fill(args)
    student = None if args.student in (None, "", "none", "None") else args.student
    if student is not None and not os.path.isfile(os.path.join(student, models.STUDENT_FILE)):
        raise UserError(f"{student} is not a student folder (no {models.STUDENT_FILE}); "
                        "pass a model folder of an earlier stage, or none for M0")
    items = pick(read_prompts(args.prompts), args.num_prompts)
    if not items:
        raise UserError(f"no eval prompts in {args.prompts}: pass a file with at least one prompt")
    eval_set = make_eval_set(items, args.eval_seeds)
    prompts, seeds, static = eval_set["prompts"], eval_set["seeds"], eval_set["static"]  # static: True / False / None
    gen_kw = {"steps": args.steps} if args.steps else {}

    rank, world, device = ranks.dist_setup()
    model = models.load(args.model, path=student or args.path, adapter=args.adapter, device=device, lora_rank=args.lora)
    check_k(args.blocks, len(model.blocks()))  # before any generation
    reward = load_reward(args.reward, device=device, **({"path": args.reward_path} if args.reward_path else {}))
    search = Search(reward, prompts, seeds, static, gen_kw=gen_kw, batch_size=args.batch_size)
    if student is not None:  # M0's scores on the same prompts and seeds, then free it (a LoRA student's: its own weights)
        full = model.teacher() if model.lora else models.load(args.model, path=args.path, adapter=args.adapter, device=device)
        search.full_scores = score_candidates(full, search, blocks=[])["base"]
        del full
    if rank == 0:
        print(f"prune: {args.model} with {len(model.blocks())} blocks, {len(items)} eval prompts x {args.eval_seeds} "
              f"seed{'s' if args.eval_seeds > 1 else ''}, "
              f"reward {args.reward}, {world} rank(s), removing {args.blocks}{' greedily' if args.greedy else ''}")
    record = prune_stage(model, search, args.blocks, args.out, args.greedy)
    if rank == 0:
        print("\n".join(summary_lines(record)))
        print(f"wrote {os.path.join(args.out, 'prune.json')}, eval_pruned.json and {os.path.join(args.out, 'pruned')}")


if __name__ == "__main__":
    cli.run_cli(main)
