#!/usr/bin/env bash
# The embedded default job, end to end in seconds on 2 cores once built: a real pretrained model,
# Karpathy's llama2.c stories260K (data/models/stories260K, 260K parameters, TinyStories), is taught
# a new habit with LoRA: every story is about a little dragon named Pip and ends "The end."
# (data/stories, written by scripts/make_story_data.py). The job evaluates and generates before and
# after, draws the loss curve, merges the adapter into the weights and checks that the merged model
# writes the same story as base + adapter.
# Usage: scripts/demo.sh [OUT_DIR]   (default out/demo; PEFT=path/to/peft overrides the binary;
#        PEFT_THREADS=N sets worker threads, default 1: the model is too small to gain from more)
# OUT_DIR must be new, empty, or a folder an earlier demo run wrote (it holds .peft-demo): the demo
# then replaces only what it writes itself and never deletes anything else.
set -euo pipefail
cd "$(dirname "$0")/.."
PEFT=${PEFT:-build/peft}
OUT=${1:-out/demo}
MODEL=data/models/stories260K
DATA=data/stories
THREADS=(--threads "${PEFT_THREADS:-1}")
[ -x "$PEFT" ] || { echo "demo: $PEFT not found; build first (see README)" >&2; exit 1; }
MARK="$OUT/.peft-demo"
WRITES=(lora merged lora.json)
OLD_WRITES=(random base base.json)  # what earlier versions of the demo wrote into a marked folder
if [ -e "$OUT" ] && [ ! -d "$OUT" ]; then
  echo "demo: $OUT exists and is not a folder; choose another OUT_DIR" >&2; exit 1
fi
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -f "$MARK" ]; then
  echo "demo: $OUT is not empty and was not written by the demo; choose a new or empty OUT_DIR" >&2
  exit 1
fi
mkdir -p "$OUT"
if [ -f "$MARK" ]; then for w in "${OLD_WRITES[@]}"; do rm -rf "${OUT:?}/$w"; done; fi
for w in "${WRITES[@]}"; do rm -rf "${OUT:?}/$w"; done  # only the demo's own outputs
echo "written by scripts/demo.sh; a later run replaces only: ${WRITES[*]}" > "$MARK"
start=$(date +%s)
step() { printf '\n== %s\n' "$*" >&2; }
json_field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])' "$1" 2>/dev/null ||
  sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }
PROMPT="Once upon a time"
MAX_NEW=200
generate() {  # generate ARGS...: one JSON line, greedy from $PROMPT
  "$PEFT" generate "${THREADS[@]}" --prompt "$PROMPT" --greedy --max-new-tokens "$MAX_NEW" --json "$@"
}
story() {  # story JSON: the prompt and its continuation, wrapped and indented, then how it ended
  local text n
  text=$PROMPT$(json_field text <<<"$1")
  n=$(json_field ids <<<"$1" | tr -cd ',' | wc -c)
  if [ "$(json_field stopped_at_end_token <<<"$1")" = True ] || [ "$(json_field stopped_at_end_token <<<"$1")" = true ]; then
    echo "      ($((n + 1)) new tokens; ended at the end-of-story token)"
  else
    echo "      ($((n + 1)) new tokens; cut off at --max-new-tokens $MAX_NEW)"
  fi
  printf '%s\n' "$text" | fold -s -w 92 | sed 's/ *$//; s/^/      /'
}

step "1/5 the base model, $MODEL: evaluate and generate"
eval_before=$("$PEFT" eval "${THREADS[@]}" --model "$MODEL" --data "$DATA/eval.jsonl" --json)
gen_before=$(generate --model "$MODEL")

step "2/5 LoRA on $DATA/train.jsonl (all linear layers, r 8)"
"$PEFT" train "${THREADS[@]}" --model "$MODEL" --data "$DATA/train.jsonl" --eval-data "$DATA/eval.jsonl" \
  --out "$OUT/lora" --epochs 3 --batch-size 8 --lr 1e-2 --target-modules all-linear --r 8 --lora-alpha 16 \
  --eval-every 8 --json > "$OUT/lora.json"

step "3/5 with the adapter: evaluate and generate"
eval_after=$("$PEFT" eval "${THREADS[@]}" --model "$MODEL" --adapter "$OUT/lora" --data "$DATA/eval.jsonl" --json)
gen_after=$(generate --model "$MODEL" --adapter "$OUT/lora")

step "4/5 merge the adapter into the base: a plain Hugging Face folder"
"$PEFT" merge "${THREADS[@]}" --model "$MODEL" --adapter "$OUT/lora" --out "$OUT/merged" >/dev/null

step "5/5 the merged model: evaluate and generate"
eval_merged=$("$PEFT" eval "${THREADS[@]}" --model "$OUT/merged" --data "$DATA/eval.jsonl" --json)
gen_merged=$(generate --model "$OUT/merged")
if [ "$(json_field text <<<"$gen_merged")" = "$(json_field text <<<"$gen_after")" ]; then
  same="the same story as base + adapter"
else
  same="a DIFFERENT story from base + adapter:"$'\n'"$(story "$gen_merged")"
fi
score() { printf 'loss %.4f, token accuracy %.3f' "$(json_field loss <<<"$1")" "$(json_field token_accuracy <<<"$1")"; }

cat <<SUMMARY

peft.cpp demo finished in $(( $(date +%s) - start )) s
  model: $MODEL (llama2.c stories260K, $(json_field trainable_params < "$OUT/lora.json") LoRA parameters trained)
  on $DATA/eval.jsonl (8 held-out stories; loss in nats/token):
    base model:        $(score "$eval_before")
    with the adapter:  $(score "$eval_after")
    merged model:      $(score "$eval_merged")
  greedy from "$PROMPT":
    base model:
$(story "$gen_before")
    with the adapter:
$(story "$gen_after")
    merged model:      $same
written:
  $OUT/lora/    the LoRA adapter in PEFT's layout (adapter_config.json, adapter_model.safetensors),
                with metrics.jsonl and loss.svg (training and eval loss)
  $OUT/merged/  base + adapter folded into one Hugging Face model folder
SUMMARY
