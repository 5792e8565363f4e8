#!/usr/bin/env python3
"""Context-free baselines for the held-out MLM numbers of docs/bert-small-mlm.md.

Tokenises WORK_DIR/train.jsonl and WORK_DIR/eval.jsonl (written by scripts/make_mlm_data.py) with
the pruned tokenizer WORK_DIR/tokenizer (no special tokens; an evaluation record is cut to 126
tokens, as --max-len 128 does with [CLS] and [SEP]) and prints, over every held-out token:
  - the cross-entropy (nats) of a unigram model: the training text's token frequencies, add-one
    smoothed over the vocabulary;
  - the accuracy of always predicting the training text's most frequent token.
The evaluation masks select tokens uniformly (15%), so these are the baselines' expected scores on
the masked positions too.

Usage: scripts/mlm_baselines.py PEFT_BINARY WORK_DIR"""
import json
import math
import os
import subprocess
import sys


def ids(peft, tokenizer, jsonl, tmp):
    with open(jsonl, encoding="utf-8") as f, open(tmp, "w", encoding="utf-8") as g:
        for line in f:
            if line.strip():
                g.write(json.loads(line)["text"].replace("\n", " ") + "\n")
    out = subprocess.run([peft, "tokenize", "--model", tokenizer, "--no-special-tokens", "--lines",
                          "--json", "--file", tmp], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["ids"]


def main():
    peft, work = sys.argv[1], sys.argv[2]
    tok = os.path.join(work, "tokenizer")
    with open(os.path.join(tok, "vocab.txt"), encoding="utf-8") as f:
        vocab = [l.rstrip("\n") for l in f]
    counts = [0] * len(vocab)
    for row in ids(peft, tok, os.path.join(work, "train.jsonl"), os.path.join(work, "bl-train.txt")):
        for i in row:
            counts[i] += 1
    total = sum(counts)
    held = [row[:126] for row in ids(peft, tok, os.path.join(work, "eval.jsonl"),
                                      os.path.join(work, "bl-eval.txt"))]
    top = max(range(len(vocab)), key=lambda i: counts[i])
    n = sum(len(r) for r in held)
    nll = -sum(math.log((counts[i] + 1) / (total + len(vocab))) for r in held for i in r)
    hit = sum(i == top for r in held for i in r)
    print(json.dumps({"train_tokens": total, "eval_tokens": n, "unigram_loss": nll / n,
                      "most_frequent_token": vocab[top], "most_frequent_accuracy": hit / n}))


if __name__ == "__main__":
    main()
