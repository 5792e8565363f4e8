#!/usr/bin/env python3
"""Few-shot training splits for bench/pet_fewshot.sh: for N in 10, 32, 100 and seed S in 1..5, a
class-balanced sample of N Amazon sentences (data/sentiment/amazon.jsonl, CC BY 4.0), never from
the held-out split data/sentiment/test-200.jsonl. Usage: bench/make_fewshot_splits.py OUT_DIR
Writes OUT_DIR/train-N-sS.jsonl (deterministic: random.Random(1000 * N + S))."""
import json
import os
import random
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def rows(name):
    with open(os.path.join(ROOT, "data", "sentiment", name), encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    test = {r["text"] for r in rows("test-200.jsonl")}
    pool = [r for r in rows("amazon.jsonl") if r["text"] not in test]
    for n in (10, 32, 100):
        for s in range(1, 6):
            rng = random.Random(1000 * n + s)
            pick = []
            for label in ("negative", "positive"):
                cls = [r for r in pool if r["label"] == label]
                pick += rng.sample(cls, n // 2)
            rng.shuffle(pick)
            with open(os.path.join(out, f"train-{n}-s{s}.jsonl"), "w", encoding="utf-8") as f:
                for r in pick:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
