#!/usr/bin/env bash
# Pretrains data/models/bert-tiny-mlm: the small masked LM that PET uses (docs/bert-tiny-mlm.md).
# Needs Debian's fortune cookie packages: apt-get install fortunes fortunes-min
#   fortunes-bofh-excuses fortunes-debian-hints
# Usage: scripts/train-mlm.sh [PEFT_BINARY] [WORK_DIR]
#   The defaults rebuild the shipped model (tiny preset, 200 steps, lr 2e-3, linear). Knobs:
#   PRESET=tiny|small (small: 4.9M parameters), STEPS=200, LR=2e-3, WARMUP=10, SCHEDULER=linear,
#   EVAL_EVERY=… / SAVE_EVERY=… (held-out loss / checkpoint-N every N steps; off by default),
#   OUT=… (default data/models/bert-tiny-mlm; a README.md there is kept).
#   The 4.9M attempt of docs/bert-tiny-mlm.md: PRESET=small STEPS=400 LR=1e-3 WARMUP=30
#   SCHEDULER=cosine EVAL_EVERY=100 SAVE_EVERY=100 OUT=/tmp/bert-small-mlm
# Writes the model files into $OUT (replacing the ones there).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEFT=${1:-$ROOT/build/peft}
WORK=${2:-${TMPDIR:-/tmp}/peft-mlm-pretrain}
PRESET=${PRESET:-tiny}
STEPS=${STEPS:-200}
LR=${LR:-2e-3}
WARMUP=${WARMUP:-10}
SCHEDULER=${SCHEDULER:-linear}
OUT=${OUT:-$ROOT/data/models/bert-tiny-mlm}
EXTRA=()
[ -n "${EVAL_EVERY:-}" ] && EXTRA+=(--eval-every "$EVAL_EVERY")
[ -n "${SAVE_EVERY:-}" ] && EXTRA+=(--save-every "$SAVE_EVERY")
mkdir -p "$WORK"
python3 "$ROOT/scripts/make_mlm_data.py" "$PEFT" "$WORK"          # corpus, held-out split, vocab
rm -rf "$WORK/init" "$WORK/run"
"$PEFT" init --arch bert --preset "$PRESET" --vocab-from "$WORK/tokenizer" --out "$WORK/init" --seed 0
"$PEFT" train --model "$WORK/init" --task mlm --method full \
  --data "$WORK/train.jsonl" --eval-data "$WORK/eval.jsonl" \
  --max-len 128 --packing --batch-size 16 --lr "$LR" --warmup-steps "$WARMUP" \
  --scheduler "$SCHEDULER" --weight-decay 0.01 --max-steps "$STEPS" --seed 0 --threads 2 \
  --log-every 10 ${EXTRA[@]+"${EXTRA[@]}"} \
  --out "$WORK/run" --json | tee "$WORK/train-summary.txt"
mkdir -p "$OUT"  # the model folder; its README.md (provenance, licences) is kept
for f in config.json model.safetensors tokenizer.json tokenizer_config.json vocab.txt metrics.jsonl loss.svg; do
  cp "$WORK/run/$f" "$OUT/$f"
done
cp "$WORK/stats.json" "$OUT/corpus-stats.json"
tail -1 "$WORK/train-summary.txt" > "$OUT/train-summary.json"
echo "wrote $OUT"
