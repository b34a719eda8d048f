"""How torch's CPU threads wait (infra/__init__.py): every script, and every module imported as a library
(`import models` in a user's notebook), sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP (which
reads it once, then), and a wait policy of the user's is kept."""
import ast
import glob
import os
import subprocess
import sys

from conftest import syntax_tree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One interpreter, started fresh, that forks a child per target (the targets are its arguments): a child
# imports its script as a module (not as __main__), or with "library" first the module named as a
# library would (`import models`), prints the target and what OMP_WAIT_POLICY was at the moment
# something first imported torch, then stops there (torch itself is not needed); "-" if nothing
# imported torch. A fork starts where the interpreter stands: numpy and scipy.stats already imported
# (neither imports torch nor reads the wait policy), nothing of the repository's, so each child
# imports its target as a fresh interpreter would, without a start of its own.
PROBE = """
import importlib, importlib.abc, importlib.util, os, sys, traceback
import numpy, scipy.stats
assert "torch" not in sys.modules
library = sys.argv[1] == "library"
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print(TARGET, os.environ.get("OMP_WAIT_POLICY", "unset"), flush=True)
            os._exit(0)
        return None
sys.path.insert(0, {root!r})
for TARGET in sys.argv[2:]:
    if os.fork() == 0:
        try:
            sys.meta_path.insert(0, Watch())
            if library:
                importlib.import_module(TARGET)
            else:
                spec = importlib.util.spec_from_file_location("probed", TARGET)
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
            print(TARGET, "-", flush=True)
        except BaseException:
            traceback.print_exc()
            print(TARGET, "failed", flush=True)
        finally:
            os._exit(0)
    os.wait()
"""


def scripts():
    """Every file that runs as a script: a top-level `if __name__ == "__main__":`."""
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "*.py")) + glob.glob(os.path.join(ROOT, "*", "*.py"))):
        if ".venv" in path:
            continue
        if any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in syntax_tree(path).body):
            found.append(path)
    return found


def library_modules():
    """Every module a user's own code can import from the repository root: the top-level files and
    the packages' files (models.animatediff, toy.shapes_model, ...), not the tests."""
    names = []
    for path in sorted(glob.glob(os.path.join(ROOT, "*.py")) + glob.glob(os.path.join(ROOT, "*", "*.py"))):
        package, name = os.path.split(os.path.relpath(path, ROOT)[:-3])
        if package == "" or os.path.isfile(os.path.join(ROOT, package, "__init__.py")):
            if package != "tests" and name != "__main__":
                names.append(f"{package}.{name}".strip(".").replace(".__init__", ""))
    return names


def policy_when_torch_loads(targets, library=False, **env):
    """{script or module: OMP_WAIT_POLICY when torch was first imported}, each target imported in a
    fork of one fresh interpreter (PROBE; scripts by path, `library` modules by name)."""
    env = dict({k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}, **env)
    r = subprocess.run([sys.executable, "-c", PROBE.format(root=ROOT), "library" if library else "script", *targets],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    seen = dict(line.rsplit(" ", 1) for line in r.stdout.splitlines())
    assert sorted(seen) == sorted(targets) and "failed" not in seen.values(), r.stderr[-2000:]
    return {(t if library else os.path.relpath(t, ROOT)): policy for t, policy in seen.items()}


def test_every_script_sets_a_passive_wait_before_torch_loads():
    found = scripts()
    names = {os.path.relpath(p, ROOT) for p in found}
    assert {"vip_loop.py", "prune.py", "curate.py", "redpo.py", "evaluate.py", "toy/shapes.py",
            "toy/gmm.py", "models/__main__.py"} <= names
    seen = policy_when_torch_loads(found)
    assert {name: s for name, s in seen.items() if s not in ("PASSIVE", "-")} == {}
    assert seen["vip_loop.py"] == seen["toy/shapes.py"] == "PASSIVE"   # these do load torch


def test_a_wait_policy_of_the_users_is_kept():
    script = [os.path.join(ROOT, "vip_loop.py")]
    assert policy_when_torch_loads(script, OMP_WAIT_POLICY="ACTIVE") == {"vip_loop.py": "ACTIVE"}
    assert policy_when_torch_loads(script, GOMP_SPINCOUNT="10000") == {"vip_loop.py": "unset"}


def test_every_module_imported_as_a_library_sets_it_before_torch_loads():
    names = library_modules()
    assert {"models", "models.animatediff", "models.videocrafter2", "redpo", "rewards", "toy.shapes_model",
            "toy.shapes_world", "toy.gmm_model", "analysis.stats"} <= set(names)
    seen = policy_when_torch_loads(names, library=True)
    assert {name: s for name, s in seen.items() if s not in ("PASSIVE", "-")} == {}
    assert seen["models"] == seen["toy.shapes_model"] == seen["redpo"] == seen["rewards"] == "PASSIVE"
    assert seen["analysis.stats"] == seen["toy"] == "-"        # these do not load torch
    assert policy_when_torch_loads(["models"], library=True, OMP_WAIT_POLICY="ACTIVE") == {"models": "ACTIVE"}
