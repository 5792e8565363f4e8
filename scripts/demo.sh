#!/usr/bin/env bash
# The embedded default job, end to end on 2 cores in about a minute:
#   a tiny random Qwen2-architecture model (peft init) with the small tokenizer in data/demo,
#   continued pre-training on plain text (full fine-tuning), then a LoRA adapter trained on
#   instruction records, evaluated and sampled before and after, and merged into the weights.
# Usage: scripts/demo.sh [OUT_DIR]   (default out/demo; PEFT=path/to/peft overrides the binary)
# OUT_DIR must be new, empty, or a folder an earlier demo run wrote (it holds .peft-demo): the demo
# then replaces only what it writes itself and never deletes anything else.
set -euo pipefail
cd "$(dirname "$0")/.."
PEFT=${PEFT:-build/peft}
OUT=${1:-out/demo}
DATA=data/demo
[ -x "$PEFT" ] || { echo "demo: $PEFT not found; build first (see README)" >&2; exit 1; }
MARK="$OUT/.peft-demo"
WRITES=(random base lora merged base.json lora.json)
if [ -e "$OUT" ] && [ ! -d "$OUT" ]; then
  echo "demo: $OUT exists and is not a folder; choose another OUT_DIR" >&2; exit 1
fi
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -f "$MARK" ]; then
  echo "demo: $OUT is not empty and was not written by the demo; choose a new or empty OUT_DIR" >&2
  exit 1
fi
mkdir -p "$OUT"
for w in "${WRITES[@]}"; do rm -rf "${OUT:?}/$w"; done  # only the demo's own outputs
echo "written by scripts/demo.sh; a later run replaces only: ${WRITES[*]}" > "$MARK"
start=$(date +%s)
step() { printf '\n== %s\n' "$*" >&2; }
json_field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])' "$1" 2>/dev/null ||
  sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }
quote() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1" 2>/dev/null || printf '%q' "$1"; }
PROMPT=$(printf 'What sound does a cow make?\n\nX')
PROMPT=${PROMPT%X}  # the instruction format ends with a blank line; $(...) would strip it

step "1/6 a tiny random model: peft init --arch qwen2 --preset tiny"
"$PEFT" init --arch qwen2 --preset tiny --vocab-from "$DATA" --seed 0 --out "$OUT/random" >/dev/null

step "2/6 continued pre-training on $DATA/pretrain.jsonl (full fine-tuning)"
"$PEFT" train --method full --model "$OUT/random" --data "$DATA/pretrain.jsonl" --out "$OUT/base" \
  --epochs 40 --batch-size 4 --lr 3e-3 --warmup-steps 10 --scheduler cosine --json > "$OUT/base.json"

step "3/6 before LoRA: evaluate and generate"
eval_before=$("$PEFT" eval --model "$OUT/base" --data "$DATA/eval.jsonl" --json)
gen_before=$("$PEFT" generate --model "$OUT/base" --prompt "$PROMPT" --max-new-tokens 12 --json | json_field text)

step "4/6 LoRA on $DATA/train.jsonl (all linear layers, r 16)"
"$PEFT" train --model "$OUT/base" --data "$DATA/train.jsonl" --eval-data "$DATA/eval.jsonl" --out "$OUT/lora" \
  --epochs 25 --batch-size 8 --lr 5e-3 --target-modules all-linear --r 16 --lora-alpha 32 --eval-every 25 --json > "$OUT/lora.json"

step "5/6 after LoRA: evaluate and generate with the adapter"
eval_after=$("$PEFT" eval --model "$OUT/base" --adapter "$OUT/lora" --data "$DATA/eval.jsonl" --json)
gen_after=$("$PEFT" generate --model "$OUT/base" --adapter "$OUT/lora" --prompt "$PROMPT" --max-new-tokens 12 --json | json_field text)

step "6/6 merge the adapter into the base: a plain Hugging Face folder"
"$PEFT" merge --model "$OUT/base" --adapter "$OUT/lora" --out "$OUT/merged" >/dev/null
eval_merged=$("$PEFT" eval --model "$OUT/merged" --data "$DATA/eval.jsonl" --json)
score() { printf 'loss %.4f, token accuracy %.3f' "$(json_field loss <<<"$1")" "$(json_field token_accuracy <<<"$1")"; }

cat <<SUMMARY

peft.cpp demo finished in $(( $(date +%s) - start )) s
  on $DATA/eval.jsonl (loss in nats/token over the answers):
    before LoRA:       $(score "$eval_before")
    with the adapter:  $(score "$eval_after")
    merged model:      $(score "$eval_merged")
  prompt:              $(quote "$PROMPT")
    before LoRA:       $(quote "$gen_before")
    with the adapter:  $(quote "$gen_after")
written:
  $OUT/random/  the random tiny model (config.json, model.safetensors, tokenizer)
  $OUT/base/    after continued pre-training (metrics.jsonl, loss.svg)
  $OUT/lora/    the LoRA adapter in PEFT's layout (adapter_config.json, adapter_model.safetensors),
                with metrics.jsonl and loss.svg
  $OUT/merged/  base + adapter folded into one Hugging Face model folder
SUMMARY
