#!/usr/bin/env python3
"""Builds data/sentiment/ from the UCI "Sentiment Labelled Sentences" files (Kotzias et al., KDD
2015; CC BY 4.0) as JSON arrays of {"text", "class": 0/1} (each ending with an empty entry):
every source sentence as {"text", "label": "negative"/"positive"} (amazon.jsonl, imdb.jsonl),
and a fixed split of the Amazon sentences: train-32.jsonl (16 + 16, the few-shot set),
test-200.jsonl (100 + 100), unlabeled-200.jsonl (200 others, labels removed).
Usage: scripts/prepare-sentiment-data.py data/datasets/uci-sentiment-labelled-sentences [OUT_DIR]
(the source copy the repository ships, with its attribution README)."""
import json
import os
import random
import sys

NAMES = {0: "negative", 1: "positive"}


def load(path):
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)
    return [{"text": r["text"], "label": NAMES[r["class"]]} for r in rows
            if r.get("text") and r.get("class") in NAMES]


def write(path, rows):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)


def main():
    src = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "data", "sentiment")
    os.makedirs(out, exist_ok=True)
    sets = {name: load(os.path.join(src, name + ".json")) for name in ("amazon", "imdb")}
    for name, rows in sets.items():
        write(os.path.join(out, name + ".jsonl"), rows)
    rng = random.Random(12)
    by_label = {l: [r for r in sets["amazon"] if r["label"] == l] for l in NAMES.values()}
    for rows in by_label.values():
        rng.shuffle(rows)
    train = by_label["negative"][:16] + by_label["positive"][:16]
    test = by_label["negative"][16:116] + by_label["positive"][16:116]
    rest = by_label["negative"][116:216] + by_label["positive"][116:216]
    rng.shuffle(train), rng.shuffle(test), rng.shuffle(rest)
    write(os.path.join(out, "train-32.jsonl"), train)
    write(os.path.join(out, "test-200.jsonl"), test)
    write(os.path.join(out, "unlabeled-200.jsonl"), [{"text": r["text"]} for r in rest])


if __name__ == "__main__":
    main()
