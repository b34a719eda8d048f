"""The user study's server (Sec. 4, Fig. 4): the page, each rater's plan, and one line per answer.

    python -m analysis.user_study serve --study study            # http://127.0.0.1:8000/?rater=CODE

The standard library's ThreadingHTTPServer, bound to 127.0.0.1 unless --host says otherwise. It reads
the study's public files only (study.json, raters.txt for the codes it accepts) and never key.json:
the server cannot leak which clip is which method. What it serves is an allow-list of exact names
(the page and the study's clips); every other path, encoded or not, is a 404.

    GET  /api/session?rater=CODE   the rater's screens (items and A, B, C... shuffled from the study's
                                   recorded seed and the code) and the items already answered
    POST /api/answer               {"rater", "item", "ranking": letters best first, "ms"} -> a line of
                                   responses.jsonl; 400 not JSON, 403 unknown rater, 422 unknown item
                                   or not a ranking, 409 answered before, 411 no length, 413 too long
"""
import hashlib
import json
import math
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from infra import disk
from infra.cli import UserError

import numpy as np


LETTERS = "ABCDEFGH"
MAX_BODY = 4096         # bytes: an answer is ~150; anything longer is refused (413)


def read_study(study_dir, private=True):
    """(study.json, key.json or None) of a study folder."""
    if not os.path.isfile(os.path.join(study_dir, "study.json")):
        raise UserError(f"{study_dir} is not a study folder (no study.json); make one with `make`")
    fix = f"make the study again with `make` (the folder {study_dir} is damaged)"
    study = disk.read_json(os.path.join(study_dir, "study.json"), fix)
    return study, disk.read_json(os.path.join(study_dir, "key.json"), fix) if private else None


def sprite_sheet(frames, scale):
    """(F, H, W, 3) uint8 -> one image of the frames scaled up `scale` times (nearest neighbour), in a
    grid of ceil(sqrt(F)) columns (a strip of 81 frames would be too wide for a browser), and its columns."""
    F, H, W, _ = frames.shape
    cols = math.ceil(math.sqrt(F))
    rows = math.ceil(F / cols)
    big = frames.repeat(scale, axis=1).repeat(scale, axis=2)             # (F, H s, W s, 3)
    sheet = np.zeros((rows * H * scale, cols * W * scale, 3), np.uint8)
    for f in range(F):
        r, c = divmod(f, cols)
        sheet[r * H * scale:(r + 1) * H * scale, c * W * scale:(c + 1) * W * scale] = big[f]
    return sheet, cols


def frames_of(sheet, num_frames, height, width, scale, cols):
    """The inverse of sprite_sheet: the original (F, H, W, 3) frames (every scale-th pixel)."""
    cells = [sheet[r * height * scale:(r + 1) * height * scale:scale, c * width * scale:(c + 1) * width * scale:scale]
             for r, c in (divmod(f, cols) for f in range(num_frames))]
    return np.stack(cells)


def rater_seed(study, rater):
    return [int(study["shuffle_seed"]), int.from_bytes(hashlib.sha256(rater.encode()).digest()[:8], "little")]


def rater_plan(study, rater):
    """The screens rater `rater` sees, in order: [{"item", "prompt", "shown": clip names as A, B, C...}].
    Items and each item's clips are shuffled from the study's recorded seed and the rater's code, so a
    reload (or the scorer) gets the same plan; the repeated item is kept away from its original."""
    rng = np.random.default_rng(rater_seed(study, rater))
    items = sorted(study["items"])
    order = [items[j] for j in rng.permutation(len(items))]
    for a, b in study.get("apart", []):                                  # move the repeat >= 2 screens away
        while abs(order.index(a) - order.index(b)) < 2 and len(order) > 3:
            order = [items[j] for j in rng.permutation(len(items))]
    return [{"item": it, "prompt": study["items"][it]["prompt"],
             "shown": [study["items"][it]["clips"][j] for j in rng.permutation(len(study["items"][it]["clips"]))]}
            for it in order]


def answer_record(study, rater, item, shown, ranking, **extra):
    """One line of responses.jsonl: the clips shown as A, B, C... and the letters best first."""
    return {"study": study["study"], "rater": rater, "item": item, "shown": list(shown), "ranking": list(ranking), **extra}



class StudyServer(ThreadingHTTPServer):
    """Serves an allow-list (the page and the study's clips, by exact name: no path can leave the
    folder or reach key.json, raters.txt or responses.jsonl) and appends answers to responses.jsonl:
    one os.write of one line under O_APPEND, fsync'd, under a lock that also refuses a second answer
    of the same rater and item."""
    daemon_threads = True
    request_queue_size = 128   # raters who answer at the same moment wait to be accepted, not reset (the default is 5)

    def __init__(self, study_dir, address=("127.0.0.1", 8000), quiet=False):
        self.study, _ = read_study(study_dir, private=False)
        disk.hold_lock(study_dir)                       # one server per study folder
        raters_txt = os.path.join(study_dir, "raters.txt")
        self.raters = set(disk.read_text(raters_txt).split()) if os.path.isfile(raters_txt) else set()
        self.files = {"/": "index.html", "/index.html": "index.html"}
        self.files.update({f"/clips/{c}.png": f"clips/{c}.png" for it in self.study["items"].values() for c in it["clips"]})
        self.dir, self.quiet, self.lock = study_dir, quiet, threading.Lock()
        self.responses = os.path.join(study_dir, "responses.jsonl")
        self.answered = set()
        if os.path.isfile(self.responses):
            with open(self.responses, "rb") as f:
                lines = f.read().split(b"\n")
            for line in lines:
                try:
                    row = json.loads(line.decode("utf-8"))
                    if row.get("study") == self.study["study"]:
                        self.answered.add((row["rater"], row["item"]))
                except (UnicodeDecodeError, ValueError, AttributeError, KeyError, TypeError):
                    continue                                 # damaged or foreign: score counts them
        super().__init__(address, Handler)

    def append(self, record):
        line = (json.dumps(record) + "\n").encode("utf-8")
        fd = os.open(self.responses, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.write(fd, line) != len(line):
                raise OSError("short write")
            os.fsync(fd)
        finally:
            os.close(fd)


class Handler(BaseHTTPRequestHandler):
    server_version = "UserStudy"

    def log_message(self, format, *args):
        if not self.server.quiet:
            super().log_message(format, *args)

    def reply(self, code, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def refuse(self, code, why):
        self.reply(code, {"error": why})

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/api/session":
            return self.session(urllib.parse.parse_qs(url.query).get("rater", [""])[0])
        name = self.server.files.get(urllib.parse.unquote(url.path))
        if name is None:
            return self.refuse(404, "not found")
        with open(os.path.join(self.server.dir, name), "rb") as f:
            self.reply(200, f.read(), "image/png" if name.endswith(".png") else "text/html; charset=utf-8")

    def session(self, rater):
        if rater not in self.server.raters:
            return self.refuse(403, "unknown rater code")
        s = self.server.study
        plan = rater_plan(s, rater)
        with self.server.lock:
            answered = [p["item"] for p in plan if (rater, p["item"]) in self.server.answered]
        screens = [{"item": p["item"], "prompt": p["prompt"], "clips": [f"/clips/{c}.png" for c in p["shown"]]} for p in plan]
        self.reply(200, {"question": s["question"], "fps": s["fps"], "frames": s["frames"], "width": s["width"],
                         "height": s["height"], "cols": s["cols"], "screens": screens, "answered": answered})

    def do_POST(self):
        if urllib.parse.urlsplit(self.path).path != "/api/answer":
            return self.refuse(404, "not found")
        length = self.headers.get("Content-Length")
        if length is None or "chunked" in self.headers.get("Transfer-Encoding", ""):
            self.close_connection = True
            return self.refuse(411, "a Content-Length is required")
        if not length.isdigit() or int(length) > MAX_BODY:
            self.close_connection = True                     # the body is not read: drop the connection after
            return self.refuse(413 if length.isdigit() else 400, f"the body must be at most {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(int(length)).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self.refuse(400, "the body is not JSON")
        if not isinstance(body, dict):
            return self.refuse(400, "the body must be a JSON object")
        rater, item, ranking = body.get("rater"), body.get("item"), body.get("ranking")
        if not isinstance(rater, str) or rater not in self.server.raters:
            return self.refuse(403, "unknown rater code")
        if not isinstance(item, str) or item not in self.server.study["items"]:
            return self.refuse(422, "unknown item")
        shown = next(p["shown"] for p in rater_plan(self.server.study, rater) if p["item"] == item)
        if not isinstance(ranking, list) or sorted(map(str, ranking)) != list(LETTERS[:len(shown)]):
            return self.refuse(422, f"ranking must order the letters {', '.join(LETTERS[:len(shown)])}, best first")
        ms = body.get("ms") if isinstance(body.get("ms"), int) else None
        record = answer_record(self.server.study, rater, item, shown, ranking, ms=ms,
                               time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        with self.server.lock:
            if (rater, item) in self.server.answered:
                return self.refuse(409, "this rater has already answered this item")
            self.server.append(record)
            self.server.answered.add((rater, item))
        self.reply(200, {"ok": True})

    def not_allowed(self):
        self.refuse(405, "only GET and POST")

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = not_allowed
