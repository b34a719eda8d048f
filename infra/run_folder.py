"""A run folder of vip_loop.py (Sec. 3.4.2): its settings, what is finished, and what to delete to redo a file.

    runs/NAME/config.json                   the resolved settings (paths relative to the repository) and the
                                            code's commit; a resumed run must match the settings (CONFIG_KEYS)
    runs/NAME/full/eval.json, videos.npz    the full model M0's row
    runs/NAME/teacher_cache/                teacher latents and scores, shared by every stage
    runs/NAME/stage_k/prune.json, pruned/, eval_pruned.json, pairs/, train/, student/, eval.json, DONE
    runs/NAME/report.md
    runs/NAME/tensorboard/                  --report_to tensorboard's log, rebuilt from the files above (tensorboard_log.py)

Every file is written atomically and last, so "is it there" is "is it finished": re-running the
same command skips what exists and resumes training from its last checkpoint. A damaged file
stops the run with one line that names what to delete (`redo_hint`); damaged pairs of a stage
whose training has not finished are found before training (`pairs_damage`) and curated again.
"""
import os
import shutil
import subprocess
import sys

from infra import disk, ranks
from infra.cli import UserError
from infra.prompt_files import read_prompts, search_seeds

ROOT = disk.ROOT
# The settings that name files: written relative to the repository root when they lie inside it, so a
# run folder reads the same from every clone.
PATH_KEYS = ("prompts", "pool", "search_prompts", "path", "adapter", "reward_path", "out")

# What a resumed run must share with the run it resumes (the rest, e.g. --out, may differ).
CONFIG_KEYS = ("model", "path", "adapter", "reward", "reward_path", "reward_dtype", "method", "stages", "blocks",
               "oneshot", "greedy", "beta", "w_sft", "lr", "batch", "epochs", "grad_accum", "tau", "prompts", "pool",
               "eval_prompts", "pool_prompts", "seeds", "seed", "world", "eval_seeds", "search_seeds", "steps",
               "search_prompts", "lora")


def relative(value, root=ROOT):
    """A path inside the repository as a path relative to its root (an absolute one, or one relative
    to the working directory); anything else as it is."""
    if not isinstance(value, str) or not value:
        return value
    full = os.path.abspath(value)
    return os.path.relpath(full, root) if full.startswith(os.path.abspath(root) + os.sep) else value


def code_version(root=ROOT):
    """{"commit": `git rev-parse HEAD`, "uncommitted_changes": whether tracked files differ from it}
    of the repository at root; null for what git cannot tell (no git, not a clone): never an error."""
    def git(*args):
        try:
            done = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None
    commit, status = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip() if commit else None,
            "uncommitted_changes": None if status is None else bool(status.strip())}


def with_provenance(config, root=ROOT):
    """What config.json holds: the settings, their paths relative to the repository root, and the
    code that ran ("code": code_version). check_config ignores "code"."""
    return dict({k: relative(v, root) if k in PATH_KEYS else v for k, v in config.items()}, code=code_version(root))


def same_file(a, b):
    """Two paths to files with the same bytes (a prompt file seen from another clone of the repo; a
    relative path is read from the repository root)."""
    a, b = (os.path.join(ROOT, p) if isinstance(p, str) and not os.path.isabs(p) else p for p in (a, b))
    if not (isinstance(a, str) and isinstance(b, str) and os.path.isfile(a) and os.path.isfile(b)):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def same_setting(key, old, new):
    """A setting of an earlier config.json equals this run's: the same value, or for a path the same
    file inside the repository (absolute or relative), or files with the same bytes."""
    if old == new:
        return True
    if key in PATH_KEYS and relative(old) == relative(new):
        return True
    return same_file(old, new)


def check_config(run_dir, config):
    """Refuse to resume a run directory whose config.json differs from `config` (its "code" record,
    which commit wrote it, does not count)."""
    path = os.path.join(run_dir, "config.json")
    if os.path.isfile(path):
        old = disk.read_json(path)
        changed = [k for k in CONFIG_KEYS if not same_setting(k, old.get(k), config.get(k))]
        if changed:
            raise UserError(
                f"{run_dir} holds a run with other settings ({', '.join(f'{k}: {old.get(k)!r} -> {config.get(k)!r}' for k in changed)}); "
                "re-run with the same flags to resume it, or pass another --out")
    search = os.path.join(run_dir, "full", "eval_search.json")
    if config.get("search_prompts") and os.path.isfile(search):
        made = sorted(int(v["seed"]) for v in disk.read_json(search)["per_video"])
        want = sorted(search_seeds(len(read_prompts(config["search_prompts"])), config.get("search_seeds") or 1))
        if made != want:
            raise UserError(f"{search} was generated with seeds {made[0]}..{made[-1]}, not the block search's "
                            f"{want[0]}..{want[-1]} (prompt_files.search_seeds); pass another --out, or delete "
                            f"{run_dir} to make the run again")


def done(path):
    return os.path.exists(path)


def videos_path(json_path):
    """Where the kept videos of an eval json live: eval.json -> videos.npz, eval_pruned.json -> videos_pruned.npz."""
    folder, stem = os.path.split(os.path.splitext(json_path)[0])
    name = "videos" + stem[len("eval"):] if stem.startswith("eval") else stem + "_videos"
    return os.path.join(folder, name + ".npz")


def stage_done(stage_dir):
    """DONE is written last; a stage whose eval files were deleted (to redo them) is entered again."""
    return all(done(os.path.join(stage_dir, f)) for f in ("DONE", "eval_pruned.json", "eval.json"))


def pairs_damage(pairs_dir, read_pairs):
    """Read back a pairs folder written before this process (pairs.jsonl with `read_pairs`, redpo's
    reader; as many pairs as summary.json counts; then every latent, shared over the ranks):
    "<file> <what is wrong>" for the first that does not read, or None."""
    try:
        pairs = read_pairs(pairs_dir)
        count = disk.read_json(os.path.join(pairs_dir, "summary.json"))["pairs"]
    except disk.Unreadable as e:
        return f"{e.path} {e.problem}"
    if count != len(pairs):
        return f"{os.path.join(pairs_dir, 'pairs.jsonl')} holds {len(pairs)} of the {count} pairs that summary.json counts"
    bad = []
    for i, p in ranks.shard(pairs):
        for f in (p["winner"], p["loser"]):
            try:
                disk.load_torch(f)
            except disk.Unreadable as e:
                bad.append((i, f"{e.path} {e.problem}"))
    bad = ranks.gather(bad)
    return bad[0] if bad else None


def drop_damaged_pairs(k, pairs_dir, read_pairs):
    """Pairs that an earlier process left (pairs_dir/pairs.jsonl) are read back first (pairs_damage);
    damaged, the folder is deleted so that stage k curates them again. The caller passes the pairs
    of a training that has not finished."""
    if done(os.path.join(pairs_dir, "pairs.jsonl")):
        damage = pairs_damage(pairs_dir, read_pairs)
        if damage and ranks.rank_world()[0] == 0:
            print(f"stage {k}: {damage}; curating the pairs again", file=sys.stderr)
            shutil.rmtree(pairs_dir)
        ranks.barrier()


def redo_hint(out, path):
    """What to delete so that re-running the same command makes `path` (a file of the run folder
    `out`) again, keeping everything it does not depend on; None for a file outside the run."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(out)).split(os.sep)
    again = "and re-run the same command"
    if rel[0] == "config.json":
        return f"delete it {again}: it is written again from the flags"
    if rel[0] == "full":
        return f"delete the folder {os.path.join(out, 'full')} {again}: the full model is evaluated again"
    if not (rel[0].startswith("stage_") and rel[0][len("stage_"):].isdigit()):
        return None
    stage_dir, name = os.path.join(out, rel[0]), rel[-1]
    if len(rel) == 2 and name.startswith(("eval", "videos")):   # an eval json and its videos go together
        json_name = "eval" + os.path.splitext(name)[0][len("videos"):] + ".json" if name.startswith("videos") else name
        files = [os.path.join(stage_dir, json_name), videos_path(os.path.join(stage_dir, json_name))]
        return f"delete {' and '.join(files)} {again}: that model is evaluated again"
    stages = sorted(int(d[6:]) for d in os.listdir(out) if d.startswith("stage_") and d[6:].isdigit())
    later = [os.path.join(out, f"stage_{j}") for j in stages if j >= int(rel[0][6:])]   # they build on it
    return (f"delete the folder{'s' if len(later) > 1 else ''} {', '.join(later)} {again}: "
            f"{'that stage is' if len(later) == 1 else 'those stages are'} redone, earlier ones are kept")
