#!/usr/bin/env python3
"""Tokenizers against their references on random text: `peft tokenize --lines --json` vs HF
`tokenizers` (tokenizer.json, vocab.txt, vocab.json + merges.txt folders) and `sentencepiece`
(tokenizer.model), 1500 strings each drawn from a pool of hard pieces (scripts, emoji and ZWJ,
Unicode whitespace, contractions, added tokens, control characters). Also checks that the
committed vectors in tests/tokenizer/vectors are what tests/tokenizer/gen_vectors.py makes."""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_ref  # noqa: E402

model_ref.ensure_env(extra_modules=("tokenizers", "sentencepiece", "jinja2"))

import sentencepiece as spm  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

ROOT = model_ref.ROOT
sys.path.insert(0, os.path.join(ROOT, "tests", "tokenizer"))
import gen_vectors  # noqa: E402

ASSETS = os.environ.get("PEFT_ASSETS_DIR") or os.path.join(ROOT, "tests", "assets")
TOK = os.path.join(ASSETS, "tokenizers")

POOL = ["hello", "World", " ", "  ", "\t", "\r", "\u00a0", "\u3000", "'s", "'T", "'LL", "\u2019", "123",
        "4567890", "\u0663", "\u00bd", "你好", "世界", "模型", "。", "，", "こんにちは", "한국어", "Привет",
        "مرحبا", "😀", "👨\u200d👩\u200d👧", "🏽", "\u200d", "\ufe0f", "<|im_start|>", "<|im_end|>",
        "<|endoftext|>", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>", "é", "e\u0301", "ﬁ", "Å", "def", "(",
        ")", "{", "}", ";", "->", "==", "...", "!!", "?", "_", "-", "#", "@", "http://x.y/z", "\u0000",
        "\u001b", "\ufeff", "\u2028", "\u0085", "\u180e", "x" * 30, "İ", "ß", "ΣΑΣ", "\U0002B920",
        "\U0002B830", "\u0378", "\ue000", "\ufffd"]


def texts(seed, n=1500):
    rng = random.Random(seed)
    return ["".join(rng.choice(POOL) for _ in range(rng.randint(1, 25))) for _ in range(n)]


def ours(folder, strings, special, tmp):
    path = os.path.join(tmp, "in.txt")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(strings) + "\n")
    args = [model_ref.peft_binary(), "tokenize", "--model", folder, "--file", path, "--lines", "--json"]
    if not special:
        args.append("--no-special-tokens")
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"peft tokenize failed ({r.returncode}): {r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])["ids"]


def compare(report, name, got, want, strings):
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    ok = len(got) == len(want) and not bad
    report.passed += ok
    report.failed += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {len(want) - len(bad)}/{len(want)} strings give the reference ids")
    for i in bad[:3]:
        print(f"     {json.dumps(strings[i], ensure_ascii=False)}\n     ours {got[i]}\n     ref  {want[i]}")


def main():
    report = model_ref.Report()
    with tempfile.TemporaryDirectory() as tmp:
        for k, name in enumerate(["qwen2.5", "bert-base-uncased", "bert-base-chinese"]):
            strings = texts(100 + k)
            tok = Tokenizer.from_file(os.path.join(TOK, name, "tokenizer.json"))
            for special in (True, False):
                compare(report, f"{name} add_special_tokens={special}", ours(os.path.join(TOK, name), strings, special, tmp),
                        [tok.encode(s, add_special_tokens=special).ids for s in strings], strings)
            if name.startswith("bert"):  # the same vocabulary as vocab.txt + tokenizer_config.json
                d = os.path.join(tmp, name)
                os.makedirs(d)
                for f in ("vocab.txt", "tokenizer_config.json"):
                    shutil.copy(os.path.join(TOK, name, f), d)
                compare(report, f"{name} vocab.txt", ours(d, strings, True, tmp),
                        [tok.encode(s).ids for s in strings], strings)
        strings = texts(200)
        ref = gen_vectors.qwen2_reference()
        compare(report, "qwen2 vocab.json + merges.txt", ours(os.path.join(TOK, "qwen2"), strings, True, tmp),
                [ref.encode(s).ids for s in strings], strings)
        for k, name in enumerate(["llama2-spm", "baichuan-7b"]):
            strings = texts(300 + k)
            sp = spm.SentencePieceProcessor(model_file=os.path.join(TOK, name, "tokenizer.model"))
            compare(report, f"{name} sentencepiece", ours(os.path.join(TOK, name), strings, False, tmp),
                    [sp.encode(s) for s in strings], strings)
            compare(report, f"{name} sentencepiece + BOS", ours(os.path.join(TOK, name), strings, True, tmp),
                    [[sp.bos_id()] + sp.encode(s) for s in strings], strings)
        # The committed vectors are the generator's output.
        out = os.path.join(tmp, "vectors")
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "tokenizer", "gen_vectors.py"), ASSETS, out],
                       check=True, capture_output=True)
        committed = os.path.join(ROOT, "tests", "tokenizer", "vectors")
        for f in sorted(os.listdir(committed)):
            if not f.endswith(".jsonl"):
                continue
            with open(os.path.join(committed, f), encoding="utf-8") as a, open(os.path.join(out, f), encoding="utf-8") as b:
                same = a.read() == b.read()
            report.passed += same
            report.failed += not same
            print(f"{'ok  ' if same else 'FAIL'} tests/tokenizer/vectors/{f} is what gen_vectors.py makes")
    report.finish()


if __name__ == "__main__":
    main()
