"""Kill a run at random moments and resume it: the strongest check of resume.

Runs a tiny 2-stage vip_loop.py (`--model tiny --reward pixel --stages 2 --blocks 2`) once without
a break, then again, killing it with SIGKILL at seeded random moments (anywhere: mid-generation,
mid-step, mid-write) and re-running the same command after each kill until it finishes. Then
compares the two runs: report.md (all but the latency column, a measurement), every eval json (the
per-video scores, params, TFLOPs: all but latency), prune.json, the pairs and the students' weights;
and looks for temps (.tmp-*) left anywhere.

    python scripts/kill_resume.py --out runs/kill_resume                                # 6 kills, one process
    python scripts/kill_resume.py --out runs/kill_resume_ddp --nproc 2 --kills 3        # torchrun: the whole tree
    python scripts/kill_resume.py --out runs/kill_agent --nproc 2 --agent_only          # torchrun's agent alone

A kill takes the whole process tree, like a node that crashed: torchrun starts each worker in a
session of its own, so killing the agent's process group would not reach them (this script walks
/proc for the descendants). --agent_only kills the torchrun agent alone, watches what its workers
do for --watch seconds, kills what is left, then resumes. Prints one line per kill and a verdict;
exit status 1 when the runs differ or a temp is left.
"""
import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--model", "tiny", "--reward", "pixel", "--stages", "2", "--blocks", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def command(run, nproc):
    launcher = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    return launcher + ["vip_loop.py", *FLAGS, "--out", run]


def start(run, nproc, log):
    return subprocess.Popen(command(run, nproc), cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


# --- processes ---------------------------------------------------------------------------------

def state(pid):
    """The /proc state letter of `pid` (R, S, Z, ...), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def alive(pid):
    return state(pid) not in (None, "Z", "X")


def descendants(pid):
    """Every process below `pid` (torchrun's workers, ffmpeg), from /proc."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def signal_all(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def kill_tree(proc):
    """SIGKILL `proc` and every process below it; stopped first, so that none starts another."""
    pids = [proc.pid] + descendants(proc.pid)
    signal_all(pids, signal.SIGSTOP)
    pids += [p for p in descendants(proc.pid) if p not in pids]
    signal_all(pids, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    return pids


# --- what a run ends with ------------------------------------------------------------------------

def temps(run):
    return sorted(os.path.relpath(os.path.join(d, n), run) for d, dirs, files in os.walk(run)
                  for n in dirs + files if n.startswith(".tmp-"))


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()[:16]


def outcome(run):
    """What must not depend on where the run was killed: {name: value}. Latency is a measurement and
    differs from run to run, and a resumed curation finds more teacher videos in the cache;
    everything else is deterministic on a CPU."""
    out = {}
    for d, _, files in sorted(os.walk(run)):
        for f in sorted(files):
            path = os.path.join(d, f)
            rel = os.path.relpath(path, run)
            if f.endswith(".json") and not rel.startswith("teacher_cache"):
                data = json.load(open(path))
                if isinstance(data, dict):   # measured; the run's folder; how many teacher videos the cache held
                    for k in ("latency", "latency_s", "out", "teacher_generated", "teacher_cached"):
                        data.pop(k, None)
                out[rel] = data
            elif f == "report.md":
                out[rel] = mask_latency(open(path).read())
            elif f.endswith((".jsonl", ".safetensors", ".npz")) and "checkpoint-" not in rel:
                out[rel] = sha(path) if f != "metrics.jsonl" else [json.loads(line) for line in open(path) if line.strip()]
            elif f.endswith(".pt") and "/latents/" in path:
                out[rel] = sha(path)
    return out


def mask_latency(text):
    """report.md with the latency column of its cost table blanked."""
    lines = []
    for line in text.splitlines():
        cells = line.split("|")
        if line.startswith("| ") and len(cells) == 9 and "Latency" not in line:
            cells[7] = " (latency) "
        lines.append("|".join(cells))
    return "\n".join(lines)


def differences(a, b):
    keys = sorted(set(a) | set(b))
    return [k for k in keys if a.get(k) != b.get(k)]


# --- the runs ------------------------------------------------------------------------------------

def finish(run, nproc, log):
    t = time.time()
    proc = start(run, nproc, log)
    rc = proc.wait()
    if rc != 0:
        sys.exit(f"{' '.join(command(run, nproc))} exited {rc}; see {log.name}")
    return time.time() - t


def last_words(log_path, run=None):
    """The last thing the run printed (a tqdm bar or a line) and the stage it was in, to say where a kill landed."""
    text = open(log_path, errors="replace").read()[-2000:]
    parts = [p.strip() for p in text.replace("\r", "\n").split("\n") if p.strip()]
    words = parts[-1][:60] if parts else "(nothing yet)"
    if run is None:
        return words
    k = 1 + sum(os.path.exists(os.path.join(run, f"stage_{j}", "DONE")) for j in (1, 2))
    return f"stage {k}" + (f", {words}" if k < 3 else ", the report")


def killed_run(run, nproc, kills, rng, straight_s, log):
    """Kill and resume until the run ends on its own; returns one line per kill."""
    lines, attempt = [], 0
    while True:
        attempt += 1
        proc = start(run, nproc, log)
        t0 = time.time()
        delay = rng.uniform(1.0, 0.5 * straight_s) if len([x for x in lines if "killed" in x]) < kills else None
        while proc.poll() is None and (delay is None or time.time() - t0 < delay):
            time.sleep(0.05)
        if proc.poll() is not None:
            if proc.returncode != 0:
                sys.exit(f"attempt {attempt} exited {proc.returncode}; see {log.name}")
            lines.append(f"attempt {attempt}: finished on its own after {time.time() - t0:.1f} s")
            return lines
        log.flush()
        where = last_words(log.name, run)
        kill_tree(proc)
        left = temps(run)
        lines.append(f"attempt {attempt}: killed at {delay:.1f} s, during: {where!r}; temps left by the kill: {len(left)}")
        print(lines[-1], flush=True)


def agent_only(run, nproc, rng, watch, log):
    """Kill torchrun's agent alone and watch its workers."""
    proc = start(run, nproc, log)
    delay = rng.uniform(20.0, 40.0)
    time.sleep(delay)
    workers = [p for p in descendants(proc.pid) if "vip_loop.py" in open(f"/proc/{p}/cmdline").read()]
    files = lambda: sum(len(f) for _, _, f in os.walk(run))   # noqa: E731
    before = files()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lines = [f"killed the agent (pid {proc.pid}) at {delay:.1f} s, during {last_words(log.name, run)!r}; "
             f"workers {workers}; files in the run: {before}"]
    t0, gone = time.time(), {}
    again = subprocess.run(command(run, nproc), cwd=ROOT, env=ENV, capture_output=True, text=True)
    said = [x for x in again.stderr.splitlines() if "is being written by another process" in x]
    lines.append(f"the same command again, {time.time() - t0:.0f} s after the agent died: exit {again.returncode}"
                 + (f", {said[0].strip()[:160]!r}" if said else ", no refusal"))
    while time.time() - t0 < watch and len(gone) < len(workers):
        for w in workers:
            if w not in gone and not alive(w):
                gone[w] = time.time() - t0
        time.sleep(0.5)
    for w in workers:
        lines.append(f"worker {w}: " + (f"ended {gone[w]:.1f} s after the agent" if w in gone else
                                        f"still running {watch} s after the agent (state {state(w)})"))
    lines.append(f"files in the run {time.time() - t0:.0f} s later: {files()}; done: "
                 + ", ".join(n for n in ("stage_1/DONE", "stage_2/DONE", "report.md") if os.path.exists(os.path.join(run, n))))
    lines.append("their last output: " + repr(last_words(log.name)))
    left = [w for w in workers if alive(w)]
    signal_all(left, signal.SIGKILL)
    if left:
        lines.append(f"killed the workers left: {left}")
    return lines


def main():
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join("runs", "kill_resume"))
    p.add_argument("--nproc", type=int, default=1, help="1: python vip_loop.py; 2+: torchrun")
    p.add_argument("--kills", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--agent_only", action="store_true", help="kill torchrun's agent alone, watch the workers")
    p.add_argument("--watch", type=float, default=120.0, help="seconds to watch the workers (--agent_only)")
    args = p.parse_args()
    out = os.path.abspath(args.out)
    straight, killed = os.path.join(out, "straight", "run"), os.path.join(out, "killed", "run")
    os.makedirs(os.path.dirname(straight), exist_ok=True), os.makedirs(os.path.dirname(killed), exist_ok=True)
    rng = random.Random(args.seed)
    with open(os.path.join(out, "straight.log"), "a") as log:
        straight_s = finish(straight, args.nproc, log) if not os.path.exists(os.path.join(straight, "report.md")) else 120.0
    print(f"uninterrupted: {straight_s:.1f} s", flush=True)
    with open(os.path.join(out, "killed.log"), "a") as log:
        if args.agent_only:
            lines = agent_only(killed, args.nproc, rng, args.watch, log)
            for line in lines:
                print(line, flush=True)
            t = time.time()
            finish(killed, args.nproc, log)
            lines.append(f"resumed with the same command: finished in {time.time() - t:.1f} s")
        else:
            lines = killed_run(killed, args.nproc, args.kills, rng, straight_s, log)
    print(lines[-1])
    a, b = outcome(straight), outcome(killed)
    diff, left = differences(a, b), temps(killed)
    n = sum(": killed at " in x or x.startswith("killed the agent") for x in lines)
    print(f"{n} kill(s); compared {len(a)} files (report.md, eval/prune jsons, pairs, students, metrics): "
          + ("all the same" if not diff else f"{len(diff)} differ: {', '.join(diff)}")
          + f"; temps left: {len(left)}" + (f" ({', '.join(left)})" if left else ""))
    sys.exit(1 if diff or left else 0)


if __name__ == "__main__":
    main()
