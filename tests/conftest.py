"""Tests import the top-level scripts from the repository root and run on one CPU thread each, in
two worker processes (pytest.ini: pytest-xdist, `-n 2`, one worker per file; the CI machine has 2
cores). The torchrun tests share one launch of two ranks (torchrun_run), forked from the test's
process by torch's own launcher (torchrun_forked), each running torchrun_parts (at the end). The
same parts run by hand under the real command:

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/conftest.py OUT REDPO_STAGE
"""
import functools
import json
import os
import pathlib
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from infra import ranks  # noqa: E402  (before torch, as the scripts: it sets how CPU threads wait)
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def run_script(script, *args, timeout=300):
    """`python SCRIPT ARGS` (or `python -m MODULE ARGS` for script "-m", args[0] the module), as a user
    runs it from the repository root, one thread: a subprocess.CompletedProcess (returncode, stdout,
    stderr as text). It runs in a forked child of this process (Script), where a fresh interpreter
    would spend 3 CPU-seconds importing torch and diffusers before its first line."""
    import subprocess
    proc = Script([script, *args])
    out, err = proc.communicate(timeout)
    return subprocess.CompletedProcess([sys.executable, script, *args], proc.returncode, out, err)


class Forked:
    """fn() in a forked child of the test's process: a process of its own (its pid, its signals, its
    exit status, its stdout and stderr) that starts with the imports this process has made. Its exit
    status is an interpreter's: SystemExit's code, 1 and a traceback on an uncaught exception, killed
    by SIGINT on an uncaught KeyboardInterrupt. The part of subprocess.Popen the tests use: pid, poll,
    send_signal, communicate, returncode; and kill, as an out-of-memory killer does (SIGKILL)."""

    def __init__(self, fn):
        import tempfile
        self.returncode = None
        self._out, self._err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        self.pid = os.fork()
        if self.pid == 0:
            self._child(fn)

    def _child(self, fn):
        import signal
        import traceback
        code = 1
        try:
            os.dup2(self._out.fileno(), 1)
            os.dup2(self._err.fileno(), 2)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            sys.stdin, sys.stdout = open(0, closefd=False), open(1, "w", closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.environ["OMP_NUM_THREADS"] = "1"
            fn()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=sys.stderr)
        except KeyboardInterrupt:
            traceback.print_exc()
            code = -signal.SIGINT
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            if code == -signal.SIGINT:                 # as an interpreter ends on an uncaught Ctrl-C
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGINT)
            os._exit(code)

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self):
        """SIGKILL, and wait for it to end."""
        if self.poll() is None:
            os.kill(self.pid, 9)
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])

    def output(self):
        """(stdout, stderr) as text, so far."""
        said = []
        for f in (self._out, self._err):
            f.seek(0)
            said.append(f.read().decode(errors="replace"))
        return tuple(said)

    def communicate(self, timeout=300):
        """Wait (SIGKILL after timeout seconds, then fail); (stdout, stderr) as text."""
        deadline = time.time() + timeout
        while self.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        if self.returncode is None:
            self.kill()
            pytest.fail(f"{self.pid} ran past {timeout} s")
        return self.output()


class Script(Forked):
    """A project script run as `__main__` in a Forked child, from `cwd` (default: the repository root):
    argv is [SCRIPT, ARGS...] or ["-m", MODULE, ARGS...], as after `python`."""

    def __init__(self, argv, cwd=ROOT):
        super().__init__(lambda: run_as_main(argv, cwd))


def run_as_main(argv, cwd=ROOT):
    """`python ARGV` from `cwd` in this process: the script (or `-m` module) run as `__main__`."""
    import runpy
    os.chdir(cwd)
    if argv[0] == "-m":          # as `python -m` would: its __main__ not already imported (runpy warns then)
        sys.argv = [argv[1], *argv[2:]]
        sys.modules.pop(f"{argv[1]}.__main__", None)
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        script = os.path.join(cwd, argv[0])
        sys.argv = [argv[0], *argv[1:]]
        sys.path.insert(0, os.path.dirname(script))
        runpy.run_path(script, run_name="__main__")


def killed_when(marker, fn, *args, pause=0.0, timeout=600):
    """fn(*args) in a Forked child of this process, SIGKILLed once `marker` exists (and `pause`
    seconds more): a run killed mid-way, as by an out-of-memory killer. The child is a process of its
    own (its own lock on the run folder, no cleanup at the kill) that starts with torch and the models
    already imported, where a fresh interpreter spends seconds. Returns what the child printed."""
    child = Forked(lambda: fn(*args))
    deadline = time.time() + timeout
    while not os.path.exists(marker) and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if os.path.exists(marker):
        time.sleep(pause)
    child.kill()
    printed = "".join(child.output())
    assert os.path.exists(marker), f"the run never reached {marker}: {printed[-3000:]}"
    return printed


@functools.lru_cache(maxsize=None)
def syntax_tree(path):
    """A Python file's syntax tree (ast.Module), parsed once per worker process: test_layout,
    test_defaults and test_threads read the same files many times. Shared: callers only read it."""
    import ast
    with open(os.path.abspath(path), encoding="utf-8") as f:
        return ast.parse(f.read())


@functools.lru_cache(maxsize=None)
def syntax_nodes(path):
    """Every node of syntax_tree(path), in ast.walk's order."""
    import ast
    return tuple(ast.walk(syntax_tree(path)))


def trainable_gradients(model, x_t, prompts_or_embeds):
    """The gradients of model's trainable parameters (made to require them) under a fixed loss on
    noise_pred at t = 10 and 500: what a memory setting (gradient checkpointing) must leave unchanged."""
    params = model.trainable_parameters()
    for p in params:
        p.requires_grad_(True)
    model.unet.zero_grad()
    model.noise_pred(x_t, torch.tensor([10, 500]), prompts_or_embeds).square().mean().backward()
    return [p.grad.clone() for p in params]

@pytest.fixture(scope="session")
def tiny_loop(tmp_path_factory):
    """`python vip_loop.py TINY_LOOP` (test_reuse.py), run once for the session in this process (one
    thread, as the scripts' tests run them) with every generate call counted (test_reuse.count_generations).
    Returns (run folder, the counts): test_reuse checks the counts, test_vip_loop the outputs."""
    import vip_loop
    from test_reuse import TINY_LOOP, count_generations
    run = tmp_path_factory.mktemp("tiny_loop") / "run"
    with pytest.MonkeyPatch.context() as mp:
        counts = count_generations(mp.setattr)
        vip_loop.main(TINY_LOOP + ["--out", str(run)])
    return run, counts


@pytest.fixture(scope="session")
def redpo_stage_32(tmp_path_factory):
    """test_redpo's stage (a pruned student, 4 real pairs) at 32 x 32: for the two runs compared by
    test_redpo.assert_same_run (summation orders), the torchrun launch's and gradient accumulation's."""
    from test_redpo import write_stage
    return write_stage(tmp_path_factory.mktemp("stage_32"), 32)


@pytest.fixture(scope="session")
def torchrun_run(redpo_stage_32, tmp_path_factory):
    """The suite's one torchrun launch, 2 processes (torchrun_parts below): a refused --out, the block
    search, the curation, the training and the one-shot loop, each in its own folder of the returned
    one, and what the launch printed to stderr (stderr.txt). One launch for the five tests that read
    them (test_cli, and test_prune, test_curate, test_redpo, test_vip_loop, which compare with one
    process): a launch's agent and rendezvous are started once."""
    out = tmp_path_factory.mktemp("torchrun")
    (out / "refused").mkdir()
    with open(out / "refused" / "config.json", "w") as f:        # a run with other settings
        json.dump({"model": "toy", "method": "sft"}, f)
    launch = Forked(lambda: torchrun_forked(["--nproc_per_node", "2"], torchrun_parts, str(out),
                                            str(redpo_stage_32)))
    _, stderr = launch.communicate(900)
    first = stderr.find("Traceback")                      # a rank's, before torchrun's own summary
    assert launch.returncode == 0, stderr[first:first + 3000] if first >= 0 else stderr[-3000:]
    (out / "stderr.txt").write_text(stderr)
    return out


def torchrun_forked(flags, fn, *args):
    """fn(*args) on each rank of the launch torchrun makes from its `flags` (those before the script,
    e.g. ["--nproc_per_node", "2"]) on one machine: torchrun's own parser, launch config, elastic
    agent, rendezvous (as --standalone: c10d on a free local port) and each rank's environment, but
    the ranks forked from this process (start method fork), with torch, diffusers and the models
    already imported, where a fresh interpreter per rank spends about 6 CPU-seconds on them. Run it in
    a Forked child: the ranks write to its stdout and stderr."""
    import uuid
    from torch.distributed import run
    from torch.distributed.launcher.api import elastic_launch
    standalone = ["--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0", "--rdzv-id", str(uuid.uuid4())]
    parsed = run.parse_args([*standalone, *flags, "--start-method", "fork", "(fn)"])   # "(fn)": no script
    config, _, _ = run.config_from_args(parsed)
    elastic_launch(config, fn)(*args)


# Tests that share a session fixture run in one worker under pytest-xdist, so that it is built once:
# the tiny loop's tests, and the torchrun launch's with the files whose module fixtures its tests use
# (test_prune's and test_curate's stage_one, test_redpo's stages). An entry is a file, one test or one of its parameters.
# pytest_collection_modifyitems checks that every test of a shared fixture is in its group.
GROUPS = {
    "torchrun": ("test_prune.py", "test_curate.py", "test_redpo.py",
                 "test_vip_loop.py::test_torchrun_two_processes_oneshot",
                 "test_cli.py::test_a_user_error_under_torchrun_is_said_once"),
    "tiny loop": ("test_reuse.py::test_loop_generates_each_eval_video_once_and_scores_as_without_reuse",
                  "test_vip_loop.py::test_two_stages_shrink_the_model_and_report_every_row",
                  "test_vip_loop.py::test_killed_in_stage_2_resumes_without_redoing_stage_1",
                  "test_vip_loop.py::test_prune_py_alone_is_the_loops_first_stage",
                  "test_lora.py::test_lora_loop_starts_as_the_full_weight_run",
                  "test_lora.py::test_lora_loop_killed_in_training_resumes_to_the_same_run[tiny]"),
}
SHARED = {"torchrun_run": "torchrun", "redpo_stage_32": "torchrun", "tiny_loop": "tiny loop"}
SPREAD_FILES = ("test_reuse.py", "test_vip_loop.py")   # cheap module fixtures, long tests: spread one by one


def short_id(nodeid, params=False):
    """'tests/test_reuse.py::test_x[2-True]' -> 'test_reuse.py::test_x' (with params: '...::test_x[2-True]')."""
    path, _, name = nodeid.partition("::")
    return f"{os.path.basename(path)}::{name if params else name.split('[', 1)[0]}"


def group_of(nodeid):
    """The GROUPS entry that holds the test (its file, the test, or one of its parameters), or None."""
    test, one = short_id(nodeid), short_id(nodeid, params=True)
    return next((g for g, entries in GROUPS.items() if {test, one, test.split("::")[0]} & set(entries)), None)


def pytest_collection_modifyitems(items):
    """The groups' tests first, the largest (torchrun) first (a stable sort: the rest keep their
    order), so that under pytest-xdist the longest work starts first."""
    stray = sorted({f"{short_id(i.nodeid)} (uses {f}: GROUPS[{g!r}])" for i in items
                    for f, g in SHARED.items() if f in i.fixturenames and group_of(i.nodeid) != g})
    if stray:
        raise pytest.UsageError(f"tests/conftest.py: add {', '.join(stray)}")
    order = list(GROUPS)
    items.sort(key=lambda item: order.index(group_of(item.nodeid)) if group_of(item.nodeid) else len(order))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's default (pytest.ini: -n 2), made per file: a test file's tests run in one
    worker, so that its module-scoped fixtures are built once; each of GROUPS in one worker, so that
    its session fixture is built once; SPREAD_FILES' other tests one by one; in collection order. (Its
    loadgroup, which could say this with marks, does not group under pytest 9.2.)"""
    if config.getvalue("dist") != "load":
        return None                                   # a --dist of the user's own
    from xdist.scheduler import LoadScopeScheduling

    class PerFile(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            group = group_of(nodeid)
            if group:
                return group
            path = nodeid.split("::", 1)[0]
            return nodeid if os.path.basename(path) in SPREAD_FILES else path

    config.option.loadscopereorder = False
    return PerFile(config, log)


# ---------------------------------------------------------------------------------------------
# What each rank of torchrun_run's launch runs, one after another, each into its own folder of OUT;
# the four torchrun tests compare them with one process. One launch instead of four: a launch's
# start (torchrun, two interpreters, their imports) costs as much CPU as the work.
# ---------------------------------------------------------------------------------------------

def refused_part(out):
    """`vip_loop.py --out OUT` where OUT holds a run with other settings: every rank refuses, as the
    command line does (cli.run_cli); the launch goes on to the next part."""
    import vip_loop
    from infra import cli
    try:
        cli.run_cli(lambda: vip_loop.main(["--out", out]))
    except SystemExit as e:
        assert e.code == 2, e.code


def prune_part(out):
    """test_prune's stage: k = 2 on the tiny model, the pixel reward; each rank writes what it chose."""
    import models
    import prune
    import rewards
    from test_prune import GEN, PROMPTS, SEEDS
    rank, world, _ = ranks.dist_setup()
    model = models.load("tiny")
    search = prune.SearchSet(rewards.load_reward("pixel"), PROMPTS, SEEDS, gen_kw=GEN, batch_size=2, progress=False)
    record = prune.prune_stage(model, search, 2, out)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"world": world, "model_removed": model.removed, "removed": record["removed"],
                   "candidates": [[c["block"], c["scores"]["total"]] for c in record["candidates"]]}, f)


def curate_part(out):
    """test_curate's stage 1: the teacher and its pruned student, the rule, pairs and teacher cache in `out`."""
    import curate
    import models
    import rewards
    from test_curate import BATCH, GEN, ITEMS, PROPS, REMOVED, SEEDS, TAU
    teacher = models.load("tiny")
    student = models.load("tiny")
    student.remove(REMOVED)
    curate.curate(curate.PairVideos(teacher, student, rewards.load_reward("pixel"), SEEDS, out + "/teacher_cache",
                                GEN, BATCH, False), ITEMS, PROPS, TAU, out + "/pairs")


def redpo_part(out, stage):
    """redpo.py's command line (test_redpo.TORCHRUN_ARGS), batch 1 per rank: the one-process batch of 2."""
    import redpo
    from test_redpo import torchrun_args
    redpo.main(torchrun_args(pathlib.Path(stage)) + ["--batch", "1", "--out", out])


def vip_loop_part(out):
    """vip_loop.py's tiny loop on the one-shot schedule (test_vip_loop)."""
    import vip_loop
    from test_reuse import TINY_LOOP
    vip_loop.main(TINY_LOOP + ["--oneshot", "--out", out])


def torchrun_parts(out, stage):
    torch.set_num_threads(1)
    ranks.dist_setup()
    refused_part(os.path.join(out, "refused"))
    prune_part(os.path.join(out, "prune"))
    curate_part(os.path.join(out, "curate"))
    redpo_part(os.path.join(out, "redpo"), stage)
    vip_loop_part(os.path.join(out, "vip_loop"))


if __name__ == "__main__":
    torchrun_parts(*sys.argv[1:3])
