"""Prompt files: the eval prompts (with static labels, Sec. 4.1) and the caption pools of Sec. 3.3.

One reader for every script: `read_prompts(path)` -> [{"prompt": str, "static": bool or None}].

    .txt   one prompt a line (blank lines skipped)
    .csv   a column `prompt`, `caption` or `name` (WebVid's caption column), optional `static`;
           lines above the header that start with `#` are comments (the labelling rule)
    .json  a list of strings or of objects with such fields

A prompt labelled static scores 0 dynamic degree (the paper's revised dynamic score; rewards.py's
apply_static_rule); unlabelled prompts are scored as they are. The files that ship are in prompts/
(captions) and toy/ (the shapes world's split); defaults.py says which one a model reads.

    python evaluate.py --model tiny --prompts prompts/eval_prompts.csv --limit 8 --out runs/demo/full
    torchrun --nproc_per_node 8 vip_loop.py --model animatediff --pool webvid.csv   # WebVid-10M's csv as the pool
"""
import csv
import io
import os

from runtime import UserError, read_json, read_text, reading

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
