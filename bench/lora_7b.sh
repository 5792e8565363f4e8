#!/usr/bin/env bash
# Issue 13, target 4: one LoRA training run per base dtype on Qwen2-7B's shapes (random weights
# made by `peft init --preset qwen2-7b`, bf16, 15.2 GB), batch 1 x 512 random tokens, r 8 on all
# seven projections, --gradient-checkpointing; 2 threads. Prints one JSON line per dtype: peak
# RSS, the memory guard's estimate, the step-1 loss (the untrained adapter: the base model's loss
# on the same batch, so the dtypes' differences are the quantisation's) and the tokens/s of the
# steps after the first (which also pages the weights in).
# Usage: bench/lora_7b.sh [WORK_DIR]   (DTYPES="bf16 q8_0 q4_0", STEPS=3, THREADS=2, PEFT=...,
#        EXTRA="..." more train flags; the model folder is made once in WORK_DIR/q7, ~5-17 min)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEFT=${PEFT:-$ROOT/build/peft}
WORK=${1:-${TMPDIR:-/tmp}/peft-lora-7b}
DTYPES=${DTYPES:-bf16 q8_0 q4_0}
STEPS=${STEPS:-3}
THREADS=${THREADS:-2}
mkdir -p "$WORK"
[ -s "$WORK/q7/model.safetensors" ] ||
  "$PEFT" init --arch qwen2 --preset qwen2-7b --dtype bf16 --seed 0 --out "$WORK/q7" >&2
python3 - "$WORK/data.jsonl" "$STEPS" <<'PY'
import json, random, sys
random.seed(3)
with open(sys.argv[1], "w") as f:
    for _ in range(int(sys.argv[2])):
        f.write(json.dumps({"input_ids": [random.randrange(151936) for _ in range(512)]}) + "\n")
PY
for d in $DTYPES; do
  # shellcheck disable=SC2086
  "$PEFT" train --model "$WORK/q7" --data "$WORK/data.jsonl" --out "$WORK/out-$d" --overwrite \
    --base-dtype "$d" --batch-size 1 --max-len 512 --r 8 --lora-alpha 16 \
    --target-modules q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj \
    --max-steps "$STEPS" --no-shuffle --threads "$THREADS" --lr 1e-4 --gradient-checkpointing \
    --log-every 1 --json ${EXTRA:-} > "$WORK/out-$d.json" 2> "$WORK/out-$d.log"
  python3 - "$d" "$WORK/out-$d.json" "$WORK/out-$d/metrics.jsonl" <<'PY'
import json, sys
d, summary, metrics = sys.argv[1], json.loads(open(sys.argv[2]).read().strip().splitlines()[-1]), [
    json.loads(l) for l in open(sys.argv[3])]
# metrics.jsonl's tokens_per_s is cumulative since the start: step k ends at k * 512 / rate_k
ends = [m["step"] * 512 / m["tokens_per_s"] for m in metrics]
after_first = (len(ends) - 1) * 512 / (ends[-1] - ends[0]) if len(ends) > 1 else None
print(json.dumps({"bench": "lora_7b", "base_dtype": d, "peak_rss_mb": round(summary["peak_rss_mb"]),
                  "memory_estimate_mb": round(summary["memory_estimate_mb"]),
                  "step1_loss": metrics[0]["loss"], "losses": [m["loss"] for m in metrics],
                  "step_seconds": [round(b - a, 1) for a, b in zip([0] + ends, ends)],
                  "tokens_per_s_after_first_step": after_first and round(after_first, 2)}))
PY
done
