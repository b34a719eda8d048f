"""Tests import the top-level scripts from the repository root and run on one CPU thread each, in
two worker processes (pytest.ini: pytest-xdist, `-n 2`, one worker per file; the CI machine has 2
cores; torchrun tests start their own processes)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import runtime  # noqa: E402,F401  before torch: it sets how torch's CPU threads wait
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def run_script(script, *args, timeout=300):
    """Run one of the project's scripts as a user would (one thread, from the repository root)."""
    import subprocess
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


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


TINY_LOOP_FILES = ("test_reuse.py", "test_vip_loop.py")   # the files whose tests share tiny_loop


def pytest_collection_modifyitems(items):
    """The files that share the tiny loop first (a stable sort: each file's order is kept), so that
    under pytest-xdist their long share of the suite starts first."""
    items.sort(key=lambda item: os.path.basename(str(item.path)) not in TINY_LOOP_FILES)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's default (pytest.ini: -n 2) made per file: a test file's tests run in one worker,
    so that its module-scoped fixtures are built once, and the two files that share the session's
    tiny loop in the same worker, so that it runs once; files in collection order. (Its loadgroup,
    which could say the same with marks, does not group under pytest 9.2.)"""
    if config.getvalue("dist") != "load":
        return None                                   # a --dist of the user's own
    from xdist.scheduler import LoadScopeScheduling

    class PerFile(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::", 1)[0]
            return "tiny loop" if os.path.basename(path) in TINY_LOOP_FILES else path

    config.option.loadscopereorder = False
    return PerFile(config, log)
