#!/usr/bin/env python3
"""Markdown tables of docs/EXPERIMENTS.md from the result folders of bench/pet_fewshot.sh
("pet DIR") and bench/methods.sh ("methods DIR")."""
import glob
import json
import os
import statistics
import sys


def load(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return json.loads(text.splitlines()[-1]) if text else None
    except (OSError, ValueError, IndexError):
        return None


def ms(xs):
    if not xs:
        return "—"
    if len(xs) == 1:
        return f"{100 * xs[0]:.1f} (1 seed)"
    return f"{100 * statistics.mean(xs):.1f} ± {100 * statistics.stdev(xs):.1f}"


def uptimes(d):
    out = []
    for n in ("uptime-start.txt", "uptime-end.txt"):
        p = os.path.join(d, n)
        if os.path.exists(p):
            out.append(open(p).read().strip())
    return out


def pet(d):
    pats = ["`{text} It was {mask}.`", "`Just {mask}! {text}`", "`{text} All in all, it was {mask}.`"]
    print("| labelled examples | seeds | " + " | ".join(f"PET p{i + 1}" for i in range(3))
          + " | PET ensemble | head baseline (seq-cls) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    zs = [load(os.path.join(d, f"zeroshot-p{i}.json")) for i in range(3)]
    print("| 0 (zero-shot) | — | " + " | ".join(
        f"{100 * z['accuracy']:.1f}" if z else "—" for z in zs) + " | — | — |")
    for n in (10, 32, 100):
        runs = sorted(glob.glob(os.path.join(d, f"n{n}-s*")))
        if not runs:
            continue
        cols = [[] for _ in range(5)]
        for r in runs:
            for i in range(3):
                j = load(os.path.join(r, f"pet-p{i}.json"))
                if j and "accuracy" in j:
                    cols[i].append(j["accuracy"])
            j = load(os.path.join(r, "ensemble.json"))
            if j and "accuracy" in j:
                cols[3].append(j["accuracy"])
            j = load(os.path.join(r, "seqcls.json"))
            if j and j.get("eval_accuracy") is not None:
                cols[4].append(j["eval_accuracy"])
        print(f"| {n} | {len(runs)} | " + " | ".join(ms(c) for c in cols) + " |")
    print()
    print("Patterns: " + ", ".join(f"p{i + 1} {p}" for i, p in enumerate(pats))
          + "; verbalizer negative → `bad`, positive → `good`. Accuracy in % on the 200 held-out"
          " sentences, mean ± sample std over seeds.")
    for u in uptimes(d):
        print(f"\n`uptime`: {u}")


METHODS = ["full", "lora", "prompt", "ptuning", "prefix", "ptuning-v2", "houlsby", "pfeiffer"]
DEEP = ["prompt", "ptuning-v2", "prompt-lr0.1", "ptuning-v2-lr0.1"]
SWEEP = ["lora-r1", "lora-r2", "lora-r4", "lora-r8", "lora-r16", "lora-r32"]


def row(d, task, m):
    j = load(os.path.join(d, f"{task}-{m}.json"))
    if j is None:
        return f"| {m} | not run | | | | |"
    if "error" in j:
        return f"| {m} | **failed**: {j['error']} | | | | |"
    acc = j.get("eval_accuracy")
    acc = "—" if acc is None else f"{100 * acc:.1f}"
    el = j.get("eval_loss")
    el = "—" if el is None else f"{el:.4f}"
    return (f"| {m} | {j.get('trainable_params', '—'):,} | {j.get('tokens_per_s', 0):.0f} | "
            f"{j.get('final_loss', float('nan')):.4f} | {el} | {acc} |")


def methods(d):
    p = os.path.join(d, "sentiment-model.txt")
    bert = open(p).read().strip() if os.path.exists(p) else "bert-small-mlm"
    for task, what in (("stories", "stories260K, Pip-the-dragon stories (eval: token accuracy %)"),
                       ("sentiment", f"{bert}, seq-cls on Amazon sentences (eval: accuracy %)")):
        if not glob.glob(os.path.join(d, f"{task}-*.json")):
            continue
        for title, names in (("methods", METHODS),
                             ("deep vs input-only prompts (10 virtual tokens)", DEEP),
                             ("LoRA rank sweep (alpha = 2r)", SWEEP)):
            print(f"**{what} — {title}**\n")
            print("| method | trainable params | tokens/s | final train loss | eval loss | eval acc |")
            print("| --- | --- | --- | --- | --- | --- |")
            b = load(os.path.join(d, f"{task}-base.json"))
            if b and title == "methods":
                print(f"| (base model, no training) | 0 | — | — | {b['loss']:.4f} | "
                      f"{100 * b['token_accuracy']:.1f} |")
            for m in names:
                print(row(d, task, m))
            print()
    for u in uptimes(d):
        print(f"`uptime`: {u}\n")


if __name__ == "__main__":
    {"pet": pet, "methods": methods}[sys.argv[1]](sys.argv[2])
