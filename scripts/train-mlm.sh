#!/usr/bin/env bash
# Pretrains data/models/bert-small-mlm: the masked LM that PET uses (docs/bert-small-mlm.md).
# Needs Debian's fortune cookie packages: apt-get install fortunes fortunes-min
#   fortunes-bofh-excuses fortunes-debian-hints
# Usage: scripts/train-mlm.sh [PEFT_BINARY] [WORK_DIR]
#   The defaults rebuild the shipped model: small preset (4.9M parameters), lr 1e-3, 100 warm-up
#   steps, cosine over 2400 steps, held-out loss and a checkpoint every 200 steps, and
#   checkpoint-1400 (the best held-out loss) copied out; ~50 min for all 2400 steps on 2 idle
#   cores. Knobs: PRESET=tiny|small, STEPS, LR, WARMUP, SCHEDULER=linear|cosine|constant,
#   EVAL_EVERY / SAVE_EVERY (0: off), CHECKPOINT=N (ship checkpoint-N; empty: the last step),
#   OUT=… (default data/models/bert-small-mlm; a README.md there is kept). The earlier tiny model:
#   PRESET=tiny STEPS=200 LR=2e-3 WARMUP=10 SCHEDULER=linear EVAL_EVERY=0 SAVE_EVERY=0 CHECKPOINT=
# Writes the model files into $OUT (replacing the ones there).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEFT=${1:-$ROOT/build/peft}
WORK=${2:-${TMPDIR:-/tmp}/peft-mlm-pretrain}
PRESET=${PRESET:-small}
STEPS=${STEPS:-2400}
LR=${LR:-1e-3}
WARMUP=${WARMUP:-100}
SCHEDULER=${SCHEDULER:-cosine}
EVAL_EVERY=${EVAL_EVERY-200}
SAVE_EVERY=${SAVE_EVERY-200}
CHECKPOINT=${CHECKPOINT-1400}
OUT=${OUT:-$ROOT/data/models/bert-small-mlm}
EXTRA=(--eval-every "${EVAL_EVERY:-0}" --save-every "${SAVE_EVERY:-0}")
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
SRC=$WORK/run${CHECKPOINT:+/checkpoint-$CHECKPOINT}
for f in config.json model.safetensors tokenizer.json tokenizer_config.json vocab.txt; do
  cp "$SRC/$f" "$OUT/$f"
done
cp "$WORK/run/metrics.jsonl" "$WORK/run/loss.svg" "$OUT/"  # the whole run's log
cp "$WORK/stats.json" "$OUT/corpus-stats.json"
tail -1 "$WORK/train-summary.txt" > "$OUT/train-summary.json"
echo "wrote $OUT"
