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
training from its last checkpoint (infra/run_folder.py: the folder's layout, config checks, what to
delete when a file is damaged). `--oneshot` is Table 4's "w/o online": every stage's blocks cut at
once and one round of training; `--method sft|dpo` are Table 3 / Table 4's baselines. The settings
of each model are defaults.PRESETS.
"""
import argparse
import contextlib
import dataclasses
import math
import os
import time

from infra import cli, disk, ranks, tensorboard_log
from infra.cli import UserError
from infra.prompt_files import make_eval_set, make_search_set, read_prompts
from infra.run_folder import check_config, done, drop_damaged_pairs, redo_hint, stage_done, with_provenance
import curate
import defaults
import evaluate
import models
import prune
import redpo
from analysis import report
from rewards import DIMENSIONS, VIDEOSCORE_DTYPES, load_reward_beside

PRESETS = defaults.PRESETS
DEFAULT_MODEL = defaults.DEFAULT_MODEL


@dataclasses.dataclass
class StageInputs:
    """What every stage of one run takes: its settings (`cfg`, as in config.json), the frozen
    teacher M0 and the reward, the eval set and its M0 scores, the curation pool."""
    cfg: dict
    teacher: object
    reward: object
    eval_set: dict
    full_scores: dict
    pool: list
    search_set: dict = None   # --search_prompts' videos, with "full": M0's eval json on them (None: the eval set)
    board: object = tensorboard_log.OFF   # --report_to tensorboard: the run's TensorBoard log (rank 0)

    @property
    def gen_kw(self):
        return {"steps": self.cfg["steps"]} if self.cfg["steps"] else {}

    def load(self, path, adapter=None):
        """The model of this run saved at `path` (a student folder, or M0's hub id / directory). With
        --lora, the run's one module set to it: the student and the teacher share its weights."""
        if self.cfg["lora"]:
            return self.teacher.student.restore_lora(path)
        return models.load(self.cfg["model"], path=path, adapter=adapter, device=self.teacher.device)


# ---------------------------------------------------------------------------------------------
# Fig. 3: the loop, and one stage of it
# ---------------------------------------------------------------------------------------------

def run(cfg, device):
    """The whole loop for a resolved configuration `cfg` (see resolve)."""
    rank, _ = ranks.rank_world()
    out, start = cfg["out"], time.perf_counter()
    check_config(out, cfg)
    inputs = setup(cfg, device)
    # The full model's row, and the scores every stage's target properties are measured against.
    with timer("evaluate"):
        inputs.full_scores = evaluate_once(inputs, inputs.teacher, os.path.join(out, "full", "eval.json"))
        if cfg["search_prompts"]:   # M0 on the block search's own prompts, apart from the eval set
            inputs.search_set = dict(make_search_set(read_prompts(cfg["search_prompts"]), cfg["search_seeds"] or 1),
                                     full=os.path.join(out, "full", "eval_search.json"))
            evaluate_once(inputs, inputs.teacher, inputs.search_set["full"], inputs.search_set)

    student_path, student_eval = None, os.path.join(out, "full", "eval.json")   # stage 1 starts from M0
    for k, n_blocks in enumerate(stage_plan(cfg["stages"], cfg["blocks"], cfg["oneshot"]), start=1):
        stage_dir = os.path.join(out, f"stage_{k}")
        if stage_done(stage_dir):
            if rank == 0:
                print(f"stage {k}: done, skipped")
        else:
            run_stage(inputs, k, n_blocks, stage_dir, student_path, student_eval)
        inputs.board.stage(k, stage_dir, cfg["method"], cfg["w_sft"])   # TensorBoard: its steps, rows, cost and clip
        student_path, student_eval = os.path.join(stage_dir, "student"), os.path.join(stage_dir, "eval.json")

    inputs.board.close()
    if rank == 0:
        text = report.write_report([out], os.path.join(out, "report.md"))
        print("\n\n".join(part for part in text.split("\n\n## ") if part.startswith("Table 1")))
        print(f"wrote {os.path.join(out, 'report.md')}")
        print(time_spent(time.perf_counter() - start))
    ranks.barrier()


def run_stage(inputs, k, n_blocks, stage_dir, student_path, student_eval):
    """One stage of Fig. 3 on the student saved at `student_path` (None: M0 itself), whose eval.json
    (the report's previous row) is `student_eval`. Each step is skipped when its output exists."""
    with timer("prune"):    # 1. Sec. 3.2: cut the n_blocks least harmful blocks, find the target properties
        student, record = prune_step(inputs, k, n_blocks, stage_dir, student_path, student_eval)
    with timer("evaluate"):  # the pruned row of Table 1 (prune_step writes it; made again here if deleted)
        evaluate_once(inputs, student, os.path.join(stage_dir, "eval_pruned.json"))
    with timer("curate"):   # 2. Sec. 3.3: teacher winners, student losers, for the target properties
        curate_step(inputs, k, stage_dir, student, curation_targets(record))
    with timer("train"):    # 3. Sec. 3.4.1: ReDPO (or a baseline), resuming from the last checkpoint
        student = train_step(inputs, k, stage_dir, student)
    with timer("evaluate"):  # the trained row of Table 1
        evaluate_once(inputs, student, os.path.join(stage_dir, "eval.json"))
    if ranks.rank_world()[0] == 0:
        w_sft_json = os.path.join(stage_dir, "train", "w_sft.json")   # the w_sft it trained with, and the rule's
        disk.write_json(os.path.join(stage_dir, "DONE"), {"stage": k, "removed": record["removed"], "w_sft": (
            disk.read_json(w_sft_json) if done(w_sft_json) else None)})
    ranks.barrier()


# ---------------------------------------------------------------------------------------------
# The steps
# ---------------------------------------------------------------------------------------------

def setup(cfg, device):
    """Read the prompts, load M0 and the reward, write config.json (once the inputs read and the
    models load) and hold the folder's lock. full_scores is filled by run."""
    eval_items = read_prompts(cfg["prompts"])[:cfg["eval_prompts"] or None]
    pool = read_prompts(cfg["pool"])
    if not eval_items:
        raise UserError(f"no prompts in {cfg['prompts']}; pass an eval prompt file with --prompts")
    teacher = models.load(cfg["model"], path=cfg["path"], adapter=cfg["adapter"], device=device, lora_rank=cfg["lora"])
    if cfg["lora"]:   # M0 is the LoRA student's module with every block on and the adapter off
        teacher = teacher.teacher()
    reward = load_reward_beside(teacher, cfg["reward"], device, path=cfg["reward_path"],   # --lora on a GPU: by turns
                                dtype=cfg["reward_dtype"])
    if ranks.rank_world()[0] == 0:
        disk.hold_lock(cfg["out"])   # one run at a time writes a folder
        if not os.path.isfile(os.path.join(cfg["out"], "config.json")):
            disk.write_json(os.path.join(cfg["out"], "config.json"), with_provenance(cfg))
    ranks.barrier()
    board = tensorboard_log.open_board(cfg["report_to"], os.path.join(cfg["out"], "tensorboard"))
    return StageInputs(cfg, teacher, reward, make_eval_set(eval_items, cfg["eval_seeds"]), None, pool, board=board)


def prune_step(inputs, k, n_blocks, stage_dir, student_path, student_eval):
    """prune.prune_stage on the student (the block search on the preset's subset of the eval set,
    the pruned row and its target properties on all of it), or prune.json read back. Returns the
    pruned student and prune.json's record."""
    prune_json, pruned_dir = os.path.join(stage_dir, "prune.json"), os.path.join(stage_dir, "pruned")
    if done(prune_json):
        record, student = disk.read_json(prune_json), inputs.load(pruned_dir)
    else:
        cfg = inputs.cfg
        student = inputs.load(student_path or cfg["path"], cfg["adapter"])
        record = prune.prune_stage(student, stage_search(inputs, student_path, student_eval), n_blocks, stage_dir,
                                   greedy=cfg["greedy"], student_dir=pruned_dir)
    return student, report_targets(k, record)


def stage_search(inputs, student_path, student_eval):
    """The stage's block search (prune.SearchSet): with --search_prompts, the search and the targets on
    prompts apart from the eval set, the pruned row on the eval set; else the search on the preset's
    subset of the eval set, the pruned row and its targets on all of it. The student's eval.json
    (or M0's on the search prompts) stands in for generating the student as it is."""
    cfg, eval_set = inputs.cfg, inputs.eval_set
    whole = (eval_set["prompts"], eval_set["seeds"], eval_set["static"])
    common = {"gen_kw": inputs.gen_kw, "batch_size": cfg["gen_batch"]}
    if inputs.search_set is not None:
        full_search, search_set = disk.read_json(inputs.search_set["full"]), inputs.search_set
        return prune.SearchSet(inputs.reward, search_set["prompts"], search_set["seeds"], search_set["static"],
                               full_search["scores"], base_eval=full_search if student_path is None else None,
                               row_set=whole, **common)
    search = subset(eval_set, cfg["search_seeds"] and cfg["search_seeds"] * eval_set["per_seed"])
    return prune.SearchSet(inputs.reward, search["prompts"], search["seeds"], search["static"], inputs.full_scores,
                           base_eval=disk.read_json(student_eval),
                           target_set=whole if len(search["prompts"]) < len(eval_set["prompts"]) else None, **common)


def report_targets(k, record):
    """Print the stage's cut and target properties (rank 0); returns the record."""
    if ranks.rank_world()[0] == 0:
        targets = curation_targets(record)
        print(f"stage {k}: removed {', '.join(record['removed'])}; target properties: "
              + ", ".join(f"{d} (drop {drop:+.3g})" for d, drop in record["target_properties"])
              + (f"; no dimension dropped, so pairs may come from any of {', '.join(targets)}"
                 if record["target_fallback"] else ""))
    return record


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


def curate_step(inputs, k, stage_dir, student, targets):
    """curate.curate's pairs for the targets, unless the stage has them. Pairs that an earlier
    process left for a training that has not finished are read back first; damaged, they are made again."""
    pairs_dir, cfg = os.path.join(stage_dir, "pairs"), inputs.cfg
    if not done(os.path.join(stage_dir, "student", models.STUDENT_FILE)):   # its training has not finished
        drop_damaged_pairs(k, pairs_dir, redpo.read_pairs)                   # damaged pairs are curated again
    if done(os.path.join(pairs_dir, "pairs.jsonl")):
        return
    kept, counts = curate.select_prompts(inputs.pool, targets, cfg["filter_prompts"])
    if ranks.rank_world()[0] == 0:
        print(f"stage {k}: prompt filter " + " -> ".join(f"{name} {n}" for name, n in counts.items()))
    if not kept:
        raise UserError(f"the prompt filter kept no prompt of {cfg['pool']} for {', '.join(targets)}; "
                        "pass a larger --pool")
    kept = kept[:cfg["pool_prompts"]] if cfg["pool_prompts"] else kept
    videos = curate.PairVideos(inputs.teacher, student, inputs.reward, list(range(cfg["seeds"])),
                               os.path.join(cfg["out"], "teacher_cache"), inputs.gen_kw, cfg["gen_batch"])
    summary = curate.curate(videos, kept, targets, cfg["tau"], pairs_dir, config=cfg)
    if ranks.rank_world()[0] == 0:
        print(f"stage {k}: curation kept {summary['pairs']} pairs of {summary['items']} prompt/seed items ("
              + ", ".join(f"{p} {c['kept']}" for p, c in summary["per_property"].items()) + ")")


def train_step(inputs, k, stage_dir, student):
    """redpo.train on the stage's pairs, then student/ written; or the trained student read back."""
    student_dir = os.path.join(stage_dir, "student")
    if done(os.path.join(student_dir, models.STUDENT_FILE)):
        return inputs.load(student_dir)
    cfg = inputs.cfg
    settings = redpo.Settings(method=cfg["method"], beta=cfg["beta"], w_sft=cfg["w_sft"], lr=cfg["lr"],
                              batch=cfg["batch"], epochs=cfg["epochs"], grad_accum=cfg["grad_accum"],
                              seed=cfg["seed"], gradient_checkpointing=cfg["gradient_checkpointing"],
                              log_w_sft_rule=True,   # a numeric w_sft: log what the paper's rule would choose
                              split_backward=bool(cfg["lora"]))
    redpo.train(student, inputs.teacher, os.path.join(stage_dir, "pairs"), os.path.join(stage_dir, "train"), settings,
                inputs.board.for_stage(k))
    if ranks.rank_world()[0] == 0:
        student.save(student_dir)
    ranks.barrier()
    return student


def evaluate_once(inputs, model, json_path, videos=None):
    """evaluate.py's eval.json of `model` on the run's eval set (or `videos`, a set of the same
    shape), unless it is already there. Returns its scores."""
    if done(json_path):
        return disk.read_json(json_path)["scores"]
    videos = videos or inputs.eval_set
    result = evaluate.evaluate_model(model, inputs.reward, (videos["prompts"], videos["seeds"], videos["static"]),
                                     batch_size=inputs.cfg["gen_batch"], **inputs.gen_kw)
    result = evaluate.with_cost(result, model, **inputs.gen_kw)
    evaluate.save_eval(result, json_path)
    ranks.barrier()
    return result["scores"]


# ---------------------------------------------------------------------------------------------
# The eval set, the stage plan, where the time went
# ---------------------------------------------------------------------------------------------

def subset(eval_set, n):
    """The first n videos of an eval set (None: all of it)."""
    return eval_set if n is None else {k: v[:n] if isinstance(v, list) else v for k, v in eval_set.items()}


def stage_plan(stages, blocks, oneshot):
    """Blocks to remove in each stage (defaults.blocks_per_stage), or one stage with all of them (--oneshot)."""
    counts = defaults.blocks_per_stage(stages, blocks)
    return [sum(counts)] if oneshot else counts


SPENT = {}   # seconds this process spent in each step of Fig. 3


@contextlib.contextmanager
def timer(step):
    """Add the wall time of the `with` body to SPENT[step]."""
    start = time.perf_counter()
    try:
        yield
    finally:
        SPENT[step] = SPENT.get(step, 0.0) + time.perf_counter() - start


def time_spent(total):
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in SPENT.items())
    return f"time: {total:.0f} s in this process ({steps}, other {total - sum(SPENT.values()):.0f} s)"


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

# The flags vip_loop.py takes besides --oneshot and --out, each the same in every script (defaults.FLAGS).
FLAGS = ("model", "path", "adapter", "reward", "reward_path", "reward_dtype", "method", "stages", "blocks", "greedy",
         "beta", "w_sft", "lr", "batch", "epochs", "grad_accum", "gradient_checkpointing", "tau", "prompts", "pool",
         "eval_prompts", "pool_prompts", "seeds", "eval_seeds", "search_seeds", "search_prompts", "steps", "gen_batch",
         "seed", "report_to", "lora")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="V.I.P. (Sec. 3.4.2): prune -> curate -> ReDPO -> evaluate, stage after stage.",
        epilog="Unset flags take the model's preset (defaults.PRESETS): the paper's settings for "
               "animatediff / videocrafter2, small fast ones for tiny / toy.", allow_abbrev=False)
    defaults.add_flags(p, FLAGS, models.DEFAULTS, method={"choices": redpo.METHODS}, w_sft={"type": redpo.parse_w_sft},
                       reward_dtype={"choices": sorted(VIDEOSCORE_DTYPES)})
    p.add_argument("--oneshot", action="store_true",
                   help="remove every stage's blocks at once, train once (Table 4's 'w/o online'; default: off)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<model>-<method>, "
                   "-oneshot added with --oneshot)")
    return p.parse_args(argv)


def resolve(args, world):
    """Flags over the model's preset -> the run's configuration (echoed to config.json)."""
    blocks_given = args.blocks is not None
    cfg = defaults.fill(args)
    cfg.update(vars(args), world=world)
    cfg["out"] = args.out or os.path.join("runs", f"{args.model}-{args.method}" + ("-oneshot" if args.oneshot else ""))
    if not blocks_given and isinstance(cfg["blocks"], list) and len(cfg["blocks"]) != cfg["stages"]:
        first = (cfg["blocks"] + cfg["blocks"][-1:] * cfg["stages"])[:cfg["stages"]]   # the preset's first stages
        raise UserError(f"the {args.model} preset removes {' '.join(map(str, cfg['blocks']))} blocks in its "
                        f"{len(cfg['blocks'])} stages; with --stages {cfg['stages']} pass --blocks too, e.g. "
                        f"--blocks {' '.join(map(str, first))} (one count for every stage, or one per stage)")
    cfg["blocks"] = defaults.blocks_per_stage(cfg["stages"], cfg["blocks"])
    return cfg


def main(argv=None):
    args = parse_args(argv)
    _, world, device = ranks.dist_setup()
    cfg = resolve(args, world)
    disk.check_out(cfg["out"])   # before any work
    try:
        run(cfg, device)
    except disk.Unreadable as e:  # a damaged file of the run: name what to delete to redo it
        raise disk.Unreadable(e.path, e.problem, redo_hint(cfg["out"], e.path) or e.fix) from e


if __name__ == "__main__":
    cli.run_cli(main)
