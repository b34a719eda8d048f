#!/usr/bin/env bash
# VBench's own environment (Table 2; analysis/vbench_eval.py runs VBench in it as a subprocess). VBench pins
# transformers 4.33.2, numpy<2 and timm<=1.0.12, which the project's transformers 5 cannot share.
#   bash scripts/vbench_env.sh              # makes .venv-vbench (6.7 GB; 2.3 to 6 min on 2 CPU cores) and checks it
#   VBENCH_VENV=/path bash scripts/vbench_env.sh
#   bash scripts/vbench_env.sh --check      # only checks an existing one
# torch comes first, as the CUDA build even on a CPU machine: PyPI's torchvision is built against it
# (with the CPU torch its _C.so misses libc10_cuda.so and torchvision::nms does not exist), and vbench
# imports torchvision. On a machine without a GPU it runs on the CPU.
# Every failure is one line on stderr that names the fix; pip's own output goes to $venv/install.log.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VBENCH_VENV:-.venv-vbench}"
py="${PYTHON:-python3}"

check() {
  if [ ! -x "$venv/bin/python" ]; then
    echo "vbench env: no environment at $venv; fix: bash scripts/vbench_env.sh" >&2
    return 1
  fi
  "$venv/bin/python" - "$venv" <<'PY'
import sys
from importlib.metadata import version
try:
    import cv2, decord, numpy, torch, torchvision, transformers  # noqa: F401
    from torchvision.ops import nms
    nms(torch.zeros(1, 4), torch.zeros(1), 0.5)   # the op a CPU torch under PyPI's torchvision lacks
    from vbench import VBench  # noqa: F401
except (ImportError, RuntimeError, OSError) as e:
    first = str(e).splitlines()[0] if str(e) else ""
    sys.exit(f"vbench env: {sys.argv[1]} is broken ({type(e).__name__}: {first}); "
             f"fix: rm -r {sys.argv[1]} && bash scripts/vbench_env.sh")
print(f"vbench env: ok ({sys.argv[1]}: vbench {version('vbench')}, torch {torch.__version__}, "
      f"torchvision {torchvision.__version__}, transformers {transformers.__version__}, "
      f"numpy {numpy.__version__}, GPU {'yes' if torch.cuda.is_available() else 'no: VBench runs on the CPU'})")
PY
}

install() {   # install DESCRIPTION ARGS...: pip install ARGS, or one line naming the fix
  local what="$1"; shift
  if ! "$venv/bin/python" -m pip install "$@" >>"$venv/install.log" 2>&1; then
    echo "vbench env: pip could not install $what ($(grep -m1 -E '^ERROR' "$venv/install.log" || tail -n1 "$venv/install.log")); fix: make PyPI reachable (or set pip's index to a mirror), then rerun bash scripts/vbench_env.sh" >&2
    exit 1
  fi
}

if [ "${1:-}" = "--check" ]; then check; exit $?; fi
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv" || { echo "vbench env: $py -m venv failed; fix: install Python 3.11 with venv (apt-get install python3-venv) or set PYTHON=/path/to/python3" >&2; exit 1; }
fi
start=$(date +%s)
install pip --upgrade pip
install "torch 2.14.1 (CUDA build)" torch==2.14.1 torchvision==0.29.1
install "vbench 0.1.5" vbench==0.1.5
echo "vbench env: installed in $(( $(date +%s) - start )) s"
check
