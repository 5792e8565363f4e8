#!/usr/bin/env bash
# Pretrains data/models/bert-tiny-mlm: the small masked LM that PET uses (docs/bert-tiny-mlm.md).
# Needs Debian's fortune cookie packages: apt-get install fortunes fortunes-min
#   fortunes-bofh-excuses fortunes-debian-hints
# Usage: scripts/train-mlm.sh [PEFT_BINARY] [WORK_DIR]   (STEPS=… to change the 200 optimizer steps)
# Writes the model files into data/models/bert-tiny-mlm/ (replacing the shipped ones).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEFT=${1:-$ROOT/build/peft}
WORK=${2:-${TMPDIR:-/tmp}/peft-mlm-pretrain}
STEPS=${STEPS:-200}
OUT=$ROOT/data/models/bert-tiny-mlm
mkdir -p "$WORK"
python3 "$ROOT/scripts/make_mlm_data.py" "$PEFT" "$WORK"          # corpus, held-out split, vocab
rm -rf "$WORK/init" "$WORK/run"
"$PEFT" init --arch bert --preset tiny --vocab-from "$WORK/tokenizer" --out "$WORK/init" --seed 0
"$PEFT" train --model "$WORK/init" --task mlm --method full \
  --data "$WORK/train.jsonl" --eval-data "$WORK/eval.jsonl" \
  --max-len 128 --packing --batch-size 16 --lr 2e-3 --warmup-steps 10 --scheduler linear \
  --weight-decay 0.01 --max-steps "$STEPS" --seed 0 --threads 2 --log-every 10 \
  --out "$WORK/run" --json | tee "$WORK/train-summary.txt"
mkdir -p "$OUT"  # the model folder; its README.md (provenance, licences) is kept
for f in config.json model.safetensors tokenizer.json tokenizer_config.json vocab.txt metrics.jsonl loss.svg; do
  cp "$WORK/run/$f" "$OUT/$f"
done
cp "$WORK/stats.json" "$OUT/corpus-stats.json"
tail -1 "$WORK/train-summary.txt" > "$OUT/train-summary.json"
echo "wrote $OUT"
