"""How torch's CPU threads wait (runtime.py): every script sets OMP_WAIT_POLICY=PASSIVE
before torch loads OpenMP (which reads it once, then), and a wait policy of the user's is kept."""
import ast
import glob
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Imports the script at argv[1] as a module (not as __main__) and prints what OMP_WAIT_POLICY was
# at the moment something first imported torch ("-" if nothing did).
PROBE = """
import importlib.abc, importlib.util, os, sys
seen = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY", "unset"))
        return None
sys.meta_path.insert(0, Watch())
sys.path.insert(0, {root!r})
spec = importlib.util.spec_from_file_location("probed", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(seen[0] if seen else "-")
"""


def scripts():
    """Every file that runs as a script: a top-level `if __name__ == "__main__":`."""
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "*.py")) + glob.glob(os.path.join(ROOT, "*", "*.py"))):
        if ".venv" in path:
            continue
        tree = ast.parse(open(path, encoding="utf-8").read())
        if any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body):
            found.append(path)
    return found


def policy_when_torch_loads(scripts, **env):
    """{script: OMP_WAIT_POLICY when torch was first imported}, each script imported in a fresh
    interpreter (all at once: the imports are most of this test's time)."""
    env = dict({k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}, **env)
    procs = {s: subprocess.Popen([sys.executable, "-c", PROBE.format(root=ROOT), s], env=env, cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in scripts}
    seen = {}
    for script, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        seen[os.path.relpath(script, ROOT)] = out.split()[-1]
    return seen


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
