#!/usr/bin/env python3
"""Builds the pretraining corpus and the pruned WordPiece vocabulary of data/models/bert-small-mlm
(see docs/bert-small-mlm.md and scripts/train-mlm.sh, which runs this).

Corpus: the English files of Debian's fortune cookie packages (fortunes, fortunes-min,
fortunes-bofh-excuses, fortunes-debian-hints; /usr/share/games/fortunes, art files left out),
one record per cookie with terminal codes removed (ESC sequences, backspace overstrikes), plus the
UCI sentiment sentences (data/sentiment/amazon.jsonl, imdb.jsonl, CC BY 4.0) WITHOUT the PET test
split (data/sentiment/test-200.jsonl) and without labels. 2% of the cookies (every 50th) are held
out for the MLM evaluation.

Vocabulary: bert-base-uncased's vocab.txt pruned to the special tokens, every token that
bert-base-uncased's own tokenizer produces at least MIN_COUNT times on all the text, the PET
verbalizer and pattern words, and every Latin single character and its ## form (original order
kept). A rarer word is split into smaller pieces (greedy WordPiece always finds a piece, down to
single characters), so nothing becomes [UNK] that was not [UNK] under bert-base-uncased: the
script checks this on all the text with the pruned tokenizer.

Usage: scripts/make_mlm_data.py PEFT_BINARY WORK_DIR
Writes WORK_DIR/{train.jsonl, eval.jsonl, tokenizer/ (vocab.txt, tokenizer.json,
tokenizer_config.json), stats.json}."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FORTUNES = "/usr/share/games/fortunes"
SKIP = {"art", "ascii-art"}  # drawings, not text
BERT = os.path.join(ROOT, "tests", "assets", "tokenizers", "bert-base-uncased")
MIN_COUNT = 8
FORCE = ["good", "bad", "great", "terrible", "awful", "excellent", "it", "was", "all", "in",
         "really", "just", "review", "product"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ESC = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[@-Z\\-_]")


def clean(text):
    text = ESC.sub("", text)
    while True:  # overstrike: "_\bx" or "x\bx" prints x
        t = re.sub(r".\x08", "", text)
        if t == text:
            break
        text = t
    text = "".join(c for c in text if c in "\n\t" or ord(c) >= 32)
    return " ".join(text.split())


def cookies():
    out = []
    for name in sorted(os.listdir(FORTUNES)):
        path = os.path.join(FORTUNES, name)
        if "." in name or name in SKIP or not os.path.isfile(path) or os.path.islink(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for c in f.read().split("\n%\n"):
                c = clean(c.strip("%"))
                if len(c) >= 8:
                    out.append(c)
    return out


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def write_jsonl(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


def main():
    peft, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    seen, fort = set(), []
    for c in cookies():
        if c not in seen:
            seen.add(c)
            fort.append(c)
    sent = os.path.join(ROOT, "data", "sentiment")
    test = {r["text"] for r in read_jsonl(os.path.join(sent, "test-200.jsonl"))}
    reviews, all_reviews = [], []
    for name in ("amazon.jsonl", "imdb.jsonl"):
        for r in read_jsonl(os.path.join(sent, name)):
            all_reviews.append(r["text"])
            if r["text"] not in test:
                reviews.append(r["text"])
    held = fort[::50]
    train = [c for i, c in enumerate(fort) if i % 50] + reviews
    write_jsonl(os.path.join(work, "train.jsonl"), train)
    write_jsonl(os.path.join(work, "eval.jsonl"), held)

    # Vocabulary: tokens bert-base-uncased produces on every text (training, held out, and all
    # review sentences, the test split included, so that none of them meets an [UNK] it would not
    # meet under the full vocabulary).
    alltext = os.path.join(work, "all-lines.txt")
    with open(alltext, "w", encoding="utf-8") as f:
        for t in fort + all_reviews:
            f.write(t.replace("\n", " ") + "\n")
    ids = json.loads(subprocess.run(
        [peft, "tokenize", "--model", BERT, "--no-special-tokens", "--lines", "--json", "--file",
         alltext], check=True, capture_output=True, text=True).stdout)["ids"]
    counts = {}
    for row in ids:
        for i in row:
            counts[i] = counts.get(i, 0) + 1
    with open(os.path.join(BERT, "vocab.txt"), encoding="utf-8") as f:
        base = [l.rstrip("\n") for l in f]
    keep = []
    for i, tok in enumerate(base):
        bare = tok[2:] if tok.startswith("##") else tok
        latin = len(bare) == 1 and ord(bare) < 0x250
        if tok in SPECIALS or tok in FORCE or counts.get(i, 0) >= MIN_COUNT or latin:
            keep.append(tok)
    vocab = [t for t in keep if t in SPECIALS] + [t for t in keep if t not in SPECIALS]
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tdir = os.path.join(work, "tokenizer")
    os.makedirs(tdir, exist_ok=True)
    with open(os.path.join(tdir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    index = {t: i for i, t in enumerate(vocab)}
    with open(os.path.join(BERT, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    tj["model"]["vocab"] = index
    for a in tj["added_tokens"]:
        a["id"] = index[a["content"]]
    pp = tj.get("post_processor") or {}
    for name, st in (pp.get("special_tokens") or {}).items():
        st["ids"] = [index[t] for t in st["tokens"]]
    for key in ("cls", "sep"):
        if key in pp:
            pp[key][1] = index[pp[key][0]]
    with open(os.path.join(tdir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
    with open(os.path.join(BERT, "tokenizer_config.json"), encoding="utf-8") as f:
        tc = json.load(f)
    tc["model_max_length"] = 128
    with open(os.path.join(tdir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tc, f, indent=2)
    ntok = sum(len(r) for r in ids)
    new_ids = json.loads(subprocess.run(
        [peft, "tokenize", "--model", tdir, "--no-special-tokens", "--lines", "--json", "--file",
         alltext], check=True, capture_output=True, text=True).stdout)["ids"]
    unk_new = sum(r.count(index["[UNK]"]) for r in new_ids)
    assert unk_new == sum(r.count(100) for r in ids), "pruning made new [UNK]s"
    for w in FORCE:
        assert w in index, w
    stats = {"cookies": len(fort), "train_records": len(train), "eval_records": len(held),
             "review_sentences_in_train": len(reviews), "tokens_all_text": ntok,
             "unk_tokens_all_text": sum(r.count(100) for r in ids), "unk_tokens_pruned": unk_new,
             "tokens_all_text_pruned": sum(len(r) for r in new_ids), "vocab_size": len(vocab)}
    with open(os.path.join(work, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
