#!/usr/bin/env bash
# One AnimateDiff stage with --lora on one CUDA GPU at the paper's sizes, each phase's real peak beside the estimate:
#
#     bash scripts/gpu_lora_check.sh OUT_DIR SD15_DIR ADAPTER_DIR [VIDEOSCORE_DIR]
#
# SD15_DIR and ADAPTER_DIR: local copies of stable-diffusion-v1-5 and animatediff-motion-adapter-v1-5-2 (the
# hub layout; the lent machines reach no network). VIDEOSCORE_DIR: a local VideoScore checkpoint (default:
# none, the pixel reward, so the scoring phase holds no 8B model). Runs in this process
#     vip_loop.py --model animatediff --lora 16 --stages 1 --blocks 4 --eval_prompts 2 --pool_prompts 2 --epochs 1 --gen_batch 1
# (the preset's 16 x 512 x 512 videos, 1 pair x 2 micro-steps, checkpointing) and prints, per phase of the stage
# (evaluate, prune, curate, train), torch.cuda.max_memory_allocated against the docs/memory/memory.json rows of
# `bench/memory_estimate.py --lora 16` (the step for train; generation for evaluate, prune and curate), and
# whether every phase stayed under 20 GiB. Add the CUDA context (~0.5 GB) for what nvidia-smi shows.
set -uo pipefail
out=${1:?usage: bash scripts/gpu_lora_check.sh OUT_DIR SD15_DIR ADAPTER_DIR [VIDEOSCORE_DIR]}
sd=${2:?SD15_DIR}
adapter=${3:?ADAPTER_DIR}
videoscore=${4:-}
reward=(--reward pixel)
[ -n "$videoscore" ] && reward=(--reward videoscore --reward_path "$videoscore")
mkdir -p "$out"
"${PYTHON:-python3}" - "$out" "$sd" "$adapter" "${reward[@]}" <<'EOF'
import contextlib, json, os, sys, time
import torch
import vip_loop

out, sd, adapter, reward = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
if not torch.cuda.is_available():
    sys.exit("no CUDA GPU: this check measures a GPU's memory")
peaks, timer = {}, vip_loop.timer


@contextlib.contextmanager
def measured(step):   # vip_loop's phases, each with its own peak
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with timer(step):
        yield
    torch.cuda.synchronize()
    peaks[step] = max(peaks.get(step, 0), torch.cuda.max_memory_allocated())


vip_loop.timer = measured
start = time.time()
vip_loop.main(["--model", "animatediff", "--path", sd, "--adapter", adapter, *reward, "--lora", "16",
               "--stages", "1", "--blocks", "4", "--eval_prompts", "2", "--pool_prompts", "2", "--epochs", "1", "--gen_batch", "1",
               "--out", os.path.join(out, "run")])
rows = [r for r in json.load(open("docs/memory/memory.json")) if r["model"] == "animatediff" and r.get("lora") == 16]
estimate = {"train": rows[0]["step_gib"], "generate": rows[0]["generation_gib"]} if rows else {}
GIB = 2 ** 30
print(f"{torch.cuda.get_device_name()}: one stage in {time.time() - start:.0f} s")
for step, peak in peaks.items():
    est = estimate.get("train" if step == "train" else "generate")
    print(f"  {step}: torch.cuda.max_memory_allocated {peak / GIB:.2f} GiB"
          + (f", estimated {est:.2f} GiB" if est is not None else ", no estimate in docs/memory/memory.json"))
print(f"every phase at or under 20 GiB: {max(peaks.values()) <= 20 * GIB}")
EOF
