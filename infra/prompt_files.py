"""Prompt files (the eval prompts with static labels, Sec. 4.1; Sec. 3.3's caption pools) and the eval set.

One reader for every script: `read_prompts(path)` -> [{"prompt": str, "static": bool or None}].
One seed convention for every script that generates the eval prompts (prune.py, evaluate.py,
vip_loop.py, `python -m models`, toy/shapes.py): prompt i at seed index j is generated with seed
1000 j + i (`eval_seeds`, `make_eval_set`), whatever a script's training --seed, so the same
(prompt, seed) is the same video in every script and rows compare paired, video by video.
A block search with prompts of its own (vip_loop.py --search_prompts) generates them with
SEARCH_SEED_OFFSET + 1000 j + i (`search_seeds`, `make_search_set`): no search video starts from an
eval video's x_T, so no choice made on the search set has seen an eval video's noise.

    .txt   one prompt a line (blank lines skipped)
    .csv   a column `prompt`, `caption` or `name` (WebVid's caption column), optional `static`;
           lines above the header that start with `#` are comments (the labelling rule)
    .json  a list of strings or of objects with such fields

A prompt labelled static scores 0 dynamic degree (the paper's revised dynamic score; rewards.py's
apply_static_rule); unlabelled prompts are scored as they are. The files that ship are in prompts/
(captions) and toy/ (the shapes world's split); defaults.py says which one a model reads.

    python evaluate.py --model tiny --prompts prompts/eval_prompts.csv --eval_prompts 8 --out runs/demo/full
    torchrun --nproc_per_node 8 vip_loop.py --model animatediff --pool webvid.csv   # WebVid-10M's csv as the pool
"""
import csv
import io
import os

from infra.cli import UserError
from infra.disk import read_json, read_text, reading

PROMPT_KEYS = ("prompt", "caption", "name")    # WebVid's csv calls its caption column "name"
TRUE_WORDS = ("true", "1", "yes", "y", "t", "static")
FALSE_WORDS = ("false", "0", "no", "n", "f", "dynamic")
FIX = "save it as UTF-8 text: one prompt a line (.txt), a csv with a prompt column, or a JSON list"


def parse_static(value, where):
    """A static/dynamic label: True, False, or None (unlabelled)."""
    if value is None or isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("", "none", "null"):
        return None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise UserError(f"{where}: static must be true/false (or empty for unlabelled), not {value!r}")


def _row(item, where):
    """A prompt-file entry (a string or a dict) -> {"prompt": str, "static": bool or None}."""
    if isinstance(item, str):
        return {"prompt": item.strip(), "static": None}
    if isinstance(item, dict):
        keys = [k for k in PROMPT_KEYS if k in item]
        if not keys:
            raise UserError(f"{where}: no {'/'.join(PROMPT_KEYS)} field; add the caption under 'prompt'")
        return {"prompt": str(item[keys[0]]).strip(), "static": parse_static(item.get("static"), where)}
    raise UserError(f"{where}: expected a string or an object with a 'prompt', got {type(item).__name__}")


def read_prompts(path):
    """Read a prompt file -> [{"prompt": str, "static": bool or None}], in file order.
    .txt: one prompt a line (blank lines skipped). .csv: a column `prompt`, `caption` or `name`
    (WebVid), optional `static` (true/false). .json: a list of strings or of such objects."""
    if not os.path.isfile(path):
        raise UserError(f"no such prompt file: {path}; pass --prompts a .txt, .csv or .json file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".txt":
        lines = read_text(path, FIX).split("\n")
        rows = [_row(line, f"{path}:{i + 1}") for i, line in enumerate(lines) if line.strip()]
    elif ext == ".csv":
        lines = read_text(path, FIX).splitlines(keepends=True)
        skip = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
        with reading(path, FIX):
            reader = csv.DictReader(io.StringIO("".join(lines[skip:]), newline=""))
            fields = [c.strip().lower() for c in reader.fieldnames or []]
            if not any(k in fields for k in PROMPT_KEYS):
                raise UserError(f"{path}: no column named {', '.join(PROMPT_KEYS)} (found {fields})")
            rows = [_row({k.strip().lower(): v for k, v in r.items() if k is not None}, f"{path}:{skip + i + 2}")
                    for i, r in enumerate(reader)]
    elif ext == ".json":
        data = read_json(path, FIX)
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON list of prompts (strings or objects)")
        rows = [_row(item, f"{path}[{i}]") for i, item in enumerate(data)]
    else:
        raise UserError(f"{path}: unknown prompt file type {ext!r}; use .txt, .csv or .json")
    rows = [r for r in rows if r["prompt"]]
    if not rows:
        raise UserError(f"{path} holds no prompts")
    return rows


def eval_seeds(n_prompts, n_seeds=1):
    """The eval set's seeds, seed index first: prompt i at seed index j (j < n_seeds) gets seed
    1000 j + i, so eval_seeds(3, 2) == [0, 1, 2, 1000, 1001, 1002]. Seed index 0 is seeds 0..n-1;
    a prompt's seeds differ for every j (prompts beyond 1000 may share a seed with another prompt,
    which is harmless: a video is a (prompt, seed) pair)."""
    if n_prompts < 0 or n_seeds < 1:
        raise UserError(f"an eval set needs at least one seed per prompt (got {n_seeds} for {n_prompts} prompts)")
    return [1000 * j + i for j in range(n_seeds) for i in range(n_prompts)]


# Search seeds start here: an eval set would need 1000 seed indices per prompt to reach them.
SEARCH_SEED_OFFSET = 1_000_000


def search_seeds(n_prompts, n_seeds=1):
    """The block search's seeds for prompts of its own: the eval convention moved by
    SEARCH_SEED_OFFSET, so search_seeds(3) == [1000000, 1000001, 1000002], apart from every eval seed."""
    return [SEARCH_SEED_OFFSET + s for s in eval_seeds(n_prompts, n_seeds)]


def make_search_set(items, n_seeds=1):
    """make_eval_set's set with the search's seeds (search_seeds) instead of the eval set's."""
    return dict(make_eval_set(items, n_seeds), seeds=search_seeds(len(items), n_seeds))


def make_eval_set(items, n_seeds=1):
    """The eval set of read_prompts' items: every prompt at every seed index (eval_seeds), seed
    index first, so the first len(items) videos are seed index 0 (the block search's subset).
    -> {"prompts", "seeds", "static": lists of len(items) * n_seeds, "per_seed": len(items)}."""
    videos = list(items) * n_seeds
    return {"prompts": [it["prompt"] for it in videos], "seeds": eval_seeds(len(items), n_seeds),
            "static": [it["static"] for it in videos], "per_seed": len(items)}
