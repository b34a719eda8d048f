"""Files: every output is written to a temp file or folder beside its target and renamed into place,
so that a crash never leaves half a file behind (`atomic_file`, `atomic_dir`); the temps of a killed
process are removed by the next write into the same folder; a full disk is one line (`DiskFull`) and
leaves no temp behind; `hold_lock` keeps a second process out of a run folder while the first still
writes it. Every file is read back through one set of readers (`read_json`, `read_jsonl`,
`read_text`, `load_torch`, `load_safetensors`, `load_npz`): a file that is missing, cut short, not
UTF-8 or not what it should be raises `Unreadable`, one line naming the file, what is wrong and what
to do, never a parser's traceback.
"""
import contextlib
import csv
import errno
import io
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib

import numpy as np
import torch

from infra.cli import UserError


class DiskFull(UserError):
    """A write ran out of space. Its temp is gone and the file it would have replaced is untouched."""

    def __init__(self, path):
        self.path = path
        super().__init__(f"{path}: no space left on the device to write it; "
                         "free space and re-run the same command: finished steps are kept")


TEMP = ".tmp-"        # temp files and folders: .tmp-<pid>-<random>[.ext], beside their target
_MINE = set()         # the temps this process is writing now


def _writer_alive(name):
    """Is the process that made the temp `name` still running (and not this one under a reused pid)?"""
    pid = name[len(TEMP):].split("-", 1)[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)         # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:          # it exists, under another user
        return True
    return True


def remove_stale_temps(directory):
    """Remove the temps in `directory` that a killed process left behind (SIGKILL skips every
    `finally`); the temps of live writers stay."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith(TEMP) and path not in _MINE and not _writer_alive(name):
            _delete(path)


def _delete(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _disk_full(e, directory):
    """Did the write fail for lack of space? errno 28 anywhere in the exception's chain, or its text
    where a library drops the errno (safetensors: "No space left on device (os error 28)"); torch.save
    hides it entirely ("unexpected pos ..."), so a failed write with less than 1 MiB left counts too."""
    cause = e
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(cause) or "os error 28" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    try:
        return isinstance(e, (OSError, RuntimeError)) and shutil.disk_usage(directory).free < 2**20
    except OSError:
        return False


@contextlib.contextmanager
def _temp(path, make):
    """The shared part of atomic_file / atomic_dir: sweep stale temps, make one, remove it at the end
    whatever happens, and turn a full disk into one line naming `path`."""
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    remove_stale_temps(d)
    tmp = make(d, f"{TEMP}{os.getpid()}-")
    _MINE.add(tmp)
    try:
        yield tmp
    except DiskFull as e:      # a nested write: name the file, unless it is inside this temp
        if e.path.startswith(tmp + os.sep):
            raise DiskFull(path) from e.__cause__
        raise
    except UserError:
        raise
    except Exception as e:         # any writer's error; re-raised as it is unless the disk is full
        if _disk_full(e, d):
            raise DiskFull(path) from e
        raise
    finally:
        _delete(tmp)
        _MINE.discard(tmp)


def _mkstemp(d, prefix, suffix):
    fd, tmp = tempfile.mkstemp(dir=d, prefix=prefix, suffix=suffix)
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_file(path):
    """Yield a temp path beside `path` (same extension) to write to; on success it becomes `path`
    in one rename (mode 0644), on failure it is removed. Readers never see half a file."""
    path = os.path.abspath(path)
    with _temp(path, lambda d, prefix: _mkstemp(d, prefix, os.path.splitext(path)[1])) as tmp:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temp folder beside `path`; on success it replaces `path` in one rename."""
    path = os.path.abspath(path)
    with _temp(path, lambda d, prefix: tempfile.mkdtemp(dir=d, prefix=prefix)) as tmp:
        os.chmod(tmp, 0o755)
        yield tmp
        if os.path.isdir(path):
            old = tmp + ".old"
            _MINE.add(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
            _MINE.discard(old)
        else:
            os.replace(tmp, path)


_LOCKS = {}           # folder -> its open lock file, held until this process ends


def check_out(path):
    """Refuse, before any work, an output folder that cannot be made: a file on its path, or a place
    where nothing can be written (/proc/..., a read-only or unwritable folder). None: nothing to check.
    Tried, not guessed from permission bits (root passes those): a folder is made beside and removed."""
    if path is None:
        return
    existing = os.path.abspath(path)
    while not os.path.lexists(existing):          # the deepest part of the path that is there
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"--out {path}: {existing} is {'a file' if os.path.isfile(existing) else 'not a folder'}; "
                        "pass a folder for --out")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=f"{TEMP}{os.getpid()}-"))
    except OSError as e:
        raise UserError(f"--out {path}: nothing can be written in {existing} ({e.strerror}); "
                        "pass a folder you can write to for --out") from None


def hold_lock(directory):
    """Make this process the only writer of `directory` until it ends: an flock on directory/.lock,
    which the kernel drops when the process dies, SIGKILL included. Refuses (UserError) while
    another process holds it, e.g. the workers of a torchrun whose agent was killed: they run on."""
    import fcntl
    directory = os.path.realpath(directory)
    if directory in _LOCKS:
        return
    os.makedirs(directory, exist_ok=True)
    f = open(os.path.join(directory, ".lock"), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise UserError(f"{directory} is being written by another process that is still running (the workers "
                        "of a torchrun whose agent was killed run on); let it end or stop it, then re-run") from None
    _LOCKS[directory] = f


def write_json(path, obj):
    with atomic_file(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2)


# ---------------------------------------------------------------------------------------------
# Reading files back: one line naming the file, what is wrong and what to do, never a traceback.
# ---------------------------------------------------------------------------------------------

class Unreadable(UserError):
    """A file that cannot be read back: missing, cut short, not UTF-8, not what it should be.
    `path`, `problem` ("is not valid JSON (...)") and `fix` (what to do) are kept apart so that a
    caller that can redo the file (a cache entry, a checkpoint) says so instead of stopping."""

    def __init__(self, path, problem, fix=None):
        self.path, self.problem, self.fix = path, problem, default_fix(path, fix)
        super().__init__(f"{path} {problem}; {self.fix}")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
# What parsers raise on a bad file: json / UTF-8 (ValueError), torch's zip reader (RuntimeError),
# pickle, numpy's zip + zlib, csv, safetensors, and the OS (missing, unreadable).
PARSE_ERRORS = (OSError, ValueError, RuntimeError, EOFError, KeyError, IndexError, pickle.UnpicklingError,
                zipfile.BadZipFile, zlib.error, csv.Error)


def _safetensor_error():
    from safetensors import SafetensorError
    return SafetensorError


def shipped(path):
    """Is `path` a file of this repository that git tracks (toy/teacher/, prompts/, ...)?"""
    rel = os.path.relpath(os.path.abspath(path), ROOT)
    if rel.startswith(".."):
        return False
    try:
        r = subprocess.run(["git", "-C", ROOT, "ls-files", "--error-unmatch", "--", rel], capture_output=True)
    except OSError:                  # no git
        return False
    return r.returncode == 0


def default_fix(path, fix=None):
    """What to do about a bad file: a shipped one is restored from git; otherwise `fix`, the reader's
    advice for its kind of file, or else remaking it."""
    if shipped(path):
        return f"it ships with the code: restore it with `git checkout -- {os.path.relpath(os.path.abspath(path), ROOT)}`"
    return fix or "re-run the command that wrote it, or restore it from a copy"


def problem(e):
    """What is wrong with a file, from the parser's exception, in a few words."""
    if isinstance(e, FileNotFoundError):
        return "is missing"
    if isinstance(e, UnicodeDecodeError):
        line = e.object.count(b"\n", 0, e.start) + 1
        return f"is not UTF-8 text (byte 0x{e.object[e.start]:02x} on line {line})"
    if isinstance(e, json.JSONDecodeError):
        return f"is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
    if isinstance(e, (PermissionError, IsADirectoryError)) or getattr(e, "errno", None) == errno.EIO:
        return f"cannot be read ({e.strerror})"
    first = (str(e).strip().splitlines() or [""])[0]
    first = first if len(first) <= 90 else first[:87] + "..."
    return f"is cut short or damaged ({type(e).__name__}{': ' + first if first else ''})"


@contextlib.contextmanager
def reading(path, fix=None):
    """Parse `path` inside the `with`: a parser's error becomes `Unreadable(path, ...)`."""
    try:
        yield
    except PARSE_ERRORS + (_safetensor_error(),) as e:
        raise Unreadable(path, problem(e), fix) from e


def read_text(path, fix=None):
    """The whole of a UTF-8 text file, its newlines as "\n" (decoded at once, so that an error
    knows its line)."""
    with reading(path, fix), open(path, "rb") as f:
        return f.read().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def read_json(path, fix=None):
    with reading(path, fix):
        return json.loads(read_text(path, fix))


def read_jsonl(path, fix=None, skip_damaged=False):
    """One JSON value per non-blank line. With skip_damaged, lines that do not parse are dropped
    and said on one line (for logs, where the rest is still worth keeping)."""
    rows, bad = [], []
    for i, line in enumerate(read_text(path, fix).splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                if not skip_damaged:
                    raise Unreadable(path, f"line {i} {problem(e)}", fix) from e
                bad.append(i)
    if bad:
        print(f"{path}: {'line' if len(bad) == 1 else 'lines'} {', '.join(map(str, bad))} did not read back "
              f"(damaged); kept the {len(rows)} that did", file=sys.stderr)
    return rows


def load_torch(path, fix=None, **kw):
    with reading(path, fix):
        return torch.load(path, **kw)


def load_safetensors(path, fix=None):
    from safetensors.torch import load_file
    with reading(path, fix):
        return load_file(path)


def load_npz(path, fix=None):
    """Every array of an .npz, read now (numpy reads lazily, so damage would surface later)."""
    with reading(path, fix), np.load(path) as z:
        return {k: z[k] for k in z.files}


def read_or_none(read, path, redo):
    """read(path), or None when the file is missing, or damaged: then one line says so and what
    happens instead (`redo`). For files the caller can simply make again, such as a cache entry."""
    if not os.path.exists(path):
        return None
    try:
        return read(path)
    except Unreadable as e:
        print(f"{e.path} {e.problem}; {redo}", file=sys.stderr)
        return None


def json_safe(obj):
    """NaN / inf -> None (strict JSON), numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def save_video(path, frames, fps=8):
    """uint8 frames (F, H, W, 3) -> an .mp4 or .gif, written atomically. The gif is encoded in memory
    first: Pillow's writer, failing on a full disk, would print a second traceback when collected."""
    import imageio.v2 as imageio
    with atomic_file(path) as tmp:
        if path.endswith(".gif"):
            gif = io.BytesIO()
            imageio.mimsave(gif, list(frames), format="GIF", duration=1000 / fps, loop=0)
            with open(tmp, "wb") as f:
                f.write(gif.getvalue())
        else:
            imageio.mimsave(tmp, list(frames), fps=fps, macro_block_size=1)
