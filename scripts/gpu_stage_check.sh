#!/usr/bin/env bash
# One V.I.P. stage end to end on a CUDA GPU at reduced size, killed and resumed:
#
#     bash scripts/gpu_stage_check.sh OUT_DIR
#
# 1. `vip_loop.py --model tiny --reward pixel --stages 1 --blocks 2` uninterrupted -> OUT_DIR/plain
# 2. the same command -> OUT_DIR/killed, SIGKILLed as soon as stage_1/pairs/summary.json exists, then
#    run again with the same command until it finishes
# 3. prints: every training loss finite and no skipped step (bf16 autocast on CUDA), the number of
#    steps, and the largest difference between the two runs' per-video scores.
set -uo pipefail
out=${1:?usage: bash scripts/gpu_stage_check.sh OUT_DIR}
cmd=("${PYTHON:-python3}" vip_loop.py --model tiny --reward pixel --stages 1 --blocks 2)
mkdir -p "$out"
start=$(date +%s)
"${cmd[@]}" --out "$out/plain" >"$out/plain.log" 2>&1; echo "plain run: rc $? in $(( $(date +%s) - start )) s"

"${cmd[@]}" --out "$out/killed" >"$out/killed.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  [ -f "$out/killed/stage_1/pairs/summary.json" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
kill -9 $pid 2>/dev/null && echo "killed after: $(cd "$out/killed" && find . -name '*.json' | sort | tr '\n' ' ')"
wait $pid 2>/dev/null
"${cmd[@]}" --out "$out/killed" >>"$out/killed.log" 2>&1; echo "resumed run: rc $?"

"${PYTHON:-python3}" - "$out" <<'EOF'
import json, math, sys
out = sys.argv[1]
rows = [json.loads(line) for line in open(f"{out}/plain/stage_1/train/metrics.jsonl")]
finite = all(math.isfinite(r["loss"]) for r in rows)
print(f"training: {len(rows)} steps, every loss finite: {finite}, skipped: {rows[-1]['skipped']}, "
      f"last loss {rows[-1]['loss']:.4f} (dpo {rows[-1]['dpo']:.4f}, sft {rows[-1]['sft']:.3e})")
for name in ("full/eval.json", "stage_1/eval_pruned.json", "stage_1/eval.json"):
    a, b = (json.load(open(f"{out}/{run}/{name}")) for run in ("plain", "killed"))
    diff = max(abs(x["scores"][k] - y["scores"][k]) for x, y in zip(a["per_video"], b["per_video"])
               for k in x["scores"] if x["scores"][k] is not None)
    print(f"{name}: {a['num_videos']} videos, total {a['scores']['total']['mean']:.4f} vs resumed "
          f"{b['scores']['total']['mean']:.4f}; largest per-video difference {diff:.2e}; device "
          f"{a['latency']['device'] if 'latency' in a else '?'}")
EOF
