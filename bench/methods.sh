#!/usr/bin/env bash
# Method comparison table of docs/EXPERIMENTS.md: every method of `peft train` on two tasks,
#   stories: data/models/stories260K on data/stories (the Pip-the-dragon style, causal LM,
#            3 epochs, batch 8), eval loss / token accuracy on data/stories/eval.jsonl;
#   sentiment: data/models/bert-small-mlm (BERT=… for another), --task seq-cls on the 800 Amazon sentences outside the
#            held-out split, 5 epochs, batch 16 (250 steps),
#            eval loss / accuracy on data/sentiment/test-200.jsonl;
# then a LoRA rank sweep (r 1..32, alpha 2r) on both. Same seed everywhere; --threads 1.
# Usage: bench/methods.sh [OUT_DIR]   (PEFT=…; TASKS="stories sentiment"; ORDER="lora …"; finished runs are
#        skipped, so the script resumes; the tables go to stdout)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEFT=${PEFT:-$ROOT/build/peft}
OUT=${1:-${TMPDIR:-/tmp}/peft-methods}
TASKS=${TASKS:-stories sentiment}
BERT=${BERT:-$ROOT/data/models/bert-small-mlm}
T=(--threads "${PEFT_THREADS:-1}")
mkdir -p "$OUT"
python3 - "$ROOT" "$OUT/sentiment-train.jsonl" <<'PY'
import json, sys
root, out = sys.argv[1], sys.argv[2]
rows = lambda n: [json.loads(l) for l in open(f"{root}/data/sentiment/{n}", encoding="utf-8") if l.strip()]
test = {r["text"] for r in rows("test-200.jsonl")}
with open(out, "w", encoding="utf-8") as f:
    for r in rows("amazon.jsonl"):
        if r["text"] not in test:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
PY
declare -A M=(
  [full]="--method full --lr 1e-3"
  [lora]="--method lora --target-modules all-linear --r 8 --lora-alpha 16 --lr 1e-2"
  [prompt]="--method prompt --num-virtual-tokens 10 --lr 3e-2"
  [ptuning]="--method ptuning --num-virtual-tokens 10 --lr 1e-2"
  [prefix]="--method prefix --num-virtual-tokens 10 --lr 1e-2"
  [ptuning-v2]="--method ptuning-v2 --num-virtual-tokens 10 --lr 1e-2"
  [houlsby]="--method adapter --adapter-kind houlsby --lr 5e-3"
  [pfeiffer]="--method adapter --adapter-kind pfeiffer --lr 5e-3"
)
# deep (every layer's keys/values) vs input-only prompts at a learning rate that can move PEFT's
# N(0, 1)-initialised prefix (see docs/EXPERIMENTS.md)
M[prompt-lr0.1]="--method prompt --num-virtual-tokens 10 --lr 1e-1"
M[ptuning-v2-lr0.1]="--method ptuning-v2 --num-virtual-tokens 10 --lr 1e-1"
for r in 1 2 4 8 16 32; do M[lora-r$r]="--method lora --target-modules all-linear --r $r --lora-alpha $((2 * r)) --lr 1e-2"; done
ORDER=${ORDER:-"full lora prompt ptuning prefix ptuning-v2 houlsby pfeiffer prompt-lr0.1 ptuning-v2-lr0.1 lora-r1 lora-r2 lora-r4 lora-r8 lora-r16 lora-r32"}
uptime > "$OUT/uptime-start.txt"
basename "$BERT" > "$OUT/sentiment-model.txt"
for task in $TASKS; do
  case $task in
    stories) TASK=(--model "$ROOT/data/models/stories260K" --data "$ROOT/data/stories/train.jsonl"
                   --eval-data "$ROOT/data/stories/eval.jsonl" --epochs 3 --batch-size 8) ;;
    sentiment) TASK=(--model "$BERT" --task seq-cls --labels negative,positive
                     --data "$OUT/sentiment-train.jsonl" --eval-data "$ROOT/data/sentiment/test-200.jsonl"
                     --epochs 5 --batch-size 16 --max-len 128) ;;
  esac
  if [ "$task" = stories ] && [ ! -s "$OUT/stories-base.json" ]; then  # the untuned model, for reference
    "$PEFT" eval "${T[@]}" --model "$ROOT/data/models/stories260K" --data "$ROOT/data/stories/eval.jsonl" \
      --json 2>/dev/null | tail -1 > "$OUT/stories-base.json"
  fi
  for m in $ORDER; do
    res=$OUT/$task-$m.json
    [ -s "$res" ] && continue
    # shellcheck disable=SC2086
    if ! "$PEFT" train "${T[@]}" "${TASK[@]}" ${M[$m]} --seed 1 --log-every 0 --out "$OUT/$task-$m" \
         --overwrite --json > "$OUT/$task-$m.out" 2> "$OUT/$task-$m.log"; then
      echo "{\"error\": $(tail -1 "$OUT/$task-$m.log" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))')}" > "$res"
    else
      tail -1 "$OUT/$task-$m.out" > "$res"
    fi
    echo "done $task $m" >&2
  done
done
uptime > "$OUT/uptime-end.txt"
python3 "$ROOT/bench/experiments_tables.py" methods "$OUT"
