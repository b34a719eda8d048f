"""Tests import the top-level scripts from the repository root and run on one CPU thread each, in
two worker processes (pytest.ini: pytest-xdist, `-n 2`; the CI machine has 2 cores; torchrun tests
start their own processes)."""
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


def pytest_collection_modifyitems(items):
    """Under pytest-xdist's loadgroup (pytest.ini), a test file's tests run in one worker, so that its
    module-scoped fixtures are built once, and the files that share the session's tiny loop
    (test_reuse.py, test_vip_loop.py) run in the same worker, so that it runs once."""
    for item in items:
        group = "tiny_loop" if "tiny_loop" in getattr(item, "fixturenames", ()) else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))
