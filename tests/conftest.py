"""Tests import the top-level scripts from the repository root and run on one CPU thread each, in
two worker processes (pytest.ini: pytest-xdist, `-n 2`, one worker per file; the CI machine has 2
cores; torchrun tests start their own processes)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
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


# The tests that use the session's tiny loop (tiny_loop): under pytest-xdist they run in one worker,
# so that it runs once; pytest_collection_modifyitems checks that the list names every one of them.
TINY_LOOP_TESTS = ("test_reuse.py::test_loop_generates_each_eval_video_once_and_scores_as_without_reuse",
                   "test_vip_loop.py::test_two_stages_shrink_the_model_and_report_every_row",
                   "test_vip_loop.py::test_killed_in_stage_2_resumes_without_redoing_stage_1",
                   "test_lora.py::test_lora_loop_starts_as_the_full_weight_run")
SPREAD_FILES = ("test_reuse.py", "test_vip_loop.py")   # cheap module fixtures, long tests: spread one by one


def short_id(nodeid):
    """'tests/test_reuse.py::test_x[2-True]' -> 'test_reuse.py::test_x'."""
    path, _, name = nodeid.partition("::")
    return f"{os.path.basename(path)}::{name.split('[', 1)[0]}"


def pytest_collection_modifyitems(items):
    """The tiny loop's tests first (a stable sort: the rest keep their order), so that under
    pytest-xdist the worker that runs them starts with them."""
    unlisted = {short_id(i.nodeid) for i in items if "tiny_loop" in i.fixturenames} - set(TINY_LOOP_TESTS)
    if unlisted:
        raise pytest.UsageError(f"tests/conftest.py: add {', '.join(sorted(unlisted))} to TINY_LOOP_TESTS")
    items.sort(key=lambda item: short_id(item.nodeid) not in TINY_LOOP_TESTS)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's default (pytest.ini: -n 2), made per file: a test file's tests run in one
    worker, so that its module-scoped fixtures are built once; the tiny loop's tests in one worker,
    so that it runs once; SPREAD_FILES' other tests one by one; in collection order. (Its loadgroup,
    which could say this with marks, does not group under pytest 9.2.)"""
    if config.getvalue("dist") != "load":
        return None                                   # a --dist of the user's own
    from xdist.scheduler import LoadScopeScheduling

    class PerFile(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            if short_id(nodeid) in TINY_LOOP_TESTS:
                return "tiny loop"
            path = nodeid.split("::", 1)[0]
            return nodeid if os.path.basename(path) in SPREAD_FILES else path

    config.option.loadscopereorder = False
    return PerFile(config, log)
