#!/usr/bin/env bash
# PET few-shot table of docs/EXPERIMENTS.md: UCI sentiment sentences (Amazon), 10 / 32 / 100
# labelled examples x 5 seeds (bench/make_fewshot_splits.py), accuracy on data/sentiment/test-200.jsonl.
# Per split: PET (LoRA, --task pet) with each of three patterns, the PET ensemble of the three
# (peft classify with three --pattern / --adapter), and the classification-head baseline
# (--task seq-cls, LoRA + linear head), same steps and learning rate. Zero-shot rows too.
# Usage: bench/pet_fewshot.sh [OUT_DIR]   (MODEL=…, PEFT=…, SIZES="10 32 100", SEEDS="1 2 3 4 5",
#        STEPS=30; a finished run is skipped, so the script resumes; the table goes to stdout)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEFT=${PEFT:-$ROOT/build/peft}
MODEL=${MODEL:-$ROOT/data/models/bert-small-mlm}
OUT=${1:-${TMPDIR:-/tmp}/peft-pet-fewshot}
SIZES=${SIZES:-10 32 100}
SEEDS=${SEEDS:-1 2 3 4 5}
STEPS=${STEPS:-30}
TEST=$ROOT/data/sentiment/test-200.jsonl
V='{"negative": "bad", "positive": "good"}'
P=("{text} It was {mask}." "Just {mask}! {text}" "{text} All in all, it was {mask}.")
T=(--threads "${PEFT_THREADS:-1}")
COMMON=(--method lora --target-modules all-linear --r 8 --lora-alpha 16 --lr 5e-3 --batch-size 8
        --max-steps "$STEPS" --warmup-steps 3 --max-len 128 --log-every 0)
mkdir -p "$OUT"
python3 "$ROOT/bench/make_fewshot_splits.py" "$OUT/splits"
uptime > "$OUT/uptime-start.txt"
for i in 0 1 2; do
  [ -s "$OUT/zeroshot-p$i.json" ] || "$PEFT" classify "${T[@]}" --model "$MODEL" --data "$TEST" \
    --pattern "${P[$i]}" --verbalizer "$V" --json 2>/dev/null | tail -1 > "$OUT/zeroshot-p$i.json"
done
for n in $SIZES; do for s in $SEEDS; do
  d=$OUT/n$n-s$s; mkdir -p "$d"; data=$OUT/splits/train-$n-s$s.jsonl
  for i in 0 1 2; do
    if [ ! -s "$d/pet-p$i.json" ]; then
      "$PEFT" train "${T[@]}" --model "$MODEL" --task pet --pattern "${P[$i]}" --verbalizer "$V" \
        --data "$data" --out "$d/pet-p$i" --overwrite --seed "$s" "${COMMON[@]}" --json \
        2>"$d/pet-p$i.log" | tail -1 > "$d/pet-p$i.train.json"
      "$PEFT" classify "${T[@]}" --model "$MODEL" --adapter "$d/pet-p$i" --data "$TEST" \
        --pattern "${P[$i]}" --verbalizer "$V" --json 2>/dev/null | tail -1 > "$d/pet-p$i.json"
    fi
  done
  [ -s "$d/ensemble.json" ] || "$PEFT" classify "${T[@]}" --model "$MODEL" --data "$TEST" --verbalizer "$V" \
    --pattern "${P[0]}" --pattern "${P[1]}" --pattern "${P[2]}" \
    --adapter "$d/pet-p0" --adapter "$d/pet-p1" --adapter "$d/pet-p2" --json 2>/dev/null | tail -1 > "$d/ensemble.json"
  [ -s "$d/seqcls.json" ] || "$PEFT" train "${T[@]}" --model "$MODEL" --task seq-cls --labels negative,positive \
    --data "$data" --eval-data "$TEST" --out "$d/seqcls" --overwrite --seed "$s" "${COMMON[@]}" --json \
    2>"$d/seqcls.log" | tail -1 > "$d/seqcls.json"
  echo "done n=$n seed=$s" >&2
done; done
uptime > "$OUT/uptime-end.txt"
python3 "$ROOT/bench/experiments_tables.py" pet "$OUT"
