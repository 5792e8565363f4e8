#!/usr/bin/env python3
"""Regenerates data/stories/: the embedded default job's data set for stories260K.

stories260K (data/models/stories260K) writes TinyStories: its greedy story from "Once upon a time"
is about a girl named Lily and goes on until it is cut off. These records teach it something new
and easy to see: every story is about a little dragon named Pip, and every story ends with
"The end.", after which the model writes BOS and generation stops. The stories are written from
templates, deterministically (no randomness, standard library only), to train.txt / eval.txt (one
story a line), and tokenized with the model's own tokenizer by `peft tokenize` into train.jsonl /
eval.jsonl as {"input_ids": [1, ...story..., 1]}: the form llama2.c trained the model on, where BOS
begins a story and the next BOS ends it. (A {"text": ...} record would end with the tokenizer's EOS,
id 2, which this model never writes and LoRA cannot teach it: see data/models/stories260K/README.md.)
Run after building: python3 scripts/make_story_data.py  (PEFT=path/to/peft overrides build/peft)
"""
import itertools
import json
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
OUT = os.path.join(ROOT, "data", "stories")
MODEL = os.path.join(ROOT, "data", "models", "stories260K")
BOS = 1

# (where Pip lives, the friend's name, "he"/"she")
HOMES = ["a cave on a hill", "a big green forest", "a small town by the sea", "a garden full of flowers",
         "a tall castle", "a quiet farm"]
FRIENDS = [("Tom", "he"), ("Sue", "she"), ("Ben", "he"), ("Mia", "she"), ("Max", "he"), ("Lucy", "she")]
# (what they find, where, the game it gives: "Let's ...", "They ... all day")
FINDS = [("a shiny red ball", "under a tree", "play catch", "played catch"),
         ("a little boat", "by the pond", "sail the boat", "sailed the boat"),
         ("a big box of paints", "in the grass", "paint a picture", "painted pictures"),
         ("a long rope", "near the rocks", "jump rope", "jumped rope"),
         ("a kite with a long tail", "on the path", "fly the kite", "flew the kite"),
         ("a bag of seeds", "by the fence", "plant the seeds", "planted seeds")]
FEELINGS = ["happy", "glad", "proud"]


def story(home, friend, find, feeling):
    name, pronoun = friend
    thing, where, lets, did = find
    return (f"Once upon a time, there was a little dragon named Pip. Pip lived in {home}. "
            f"Pip had a friend named {name}. One day, Pip and {name} found {thing} {where}. "
            f"\"Look, {name}!\" said Pip. \"Let's {lets}!\" They {did} all day. "
            f"When the sun went down, Pip gave {name} a big hug, and {pronoun} was very {feeling}. "
            f"Pip smiled and flew home. The end.")


def records():
    train, evaluation = [], []
    for i, (home, friend, find) in enumerate(itertools.product(HOMES, FRIENDS, FINDS)):
        if i % 3:  # 72 of the 216 combinations: every third is taken
            continue
        text = story(home, friend, find, FEELINGS[(i // 3) % len(FEELINGS)])
        (evaluation if (i // 3) % 9 == 4 else train).append(text)
    return train, evaluation


def main():
    peft = os.environ.get("PEFT", os.path.join(ROOT, "build", "peft"))
    train, evaluation = records()
    os.makedirs(OUT, exist_ok=True)
    for name, stories in (("train", train), ("eval", evaluation)):
        txt = os.path.join(OUT, name + ".txt")
        with open(txt, "w") as f:
            f.write("".join(s + "\n" for s in stories))
        out = subprocess.run([peft, "tokenize", "--model", MODEL, "--lines", "--json", "--file", txt],
                             check=True, capture_output=True, text=True).stdout
        ids = json.loads(out)["ids"]
        assert len(ids) == len(stories) and all(row[0] == BOS for row in ids)
        with open(os.path.join(OUT, name + ".jsonl"), "w") as f:
            for row in ids:
                f.write(json.dumps({"input_ids": row + [BOS]}, separators=(",", ":")) + "\n")
    print(f"wrote {len(train)} training and {len(evaluation)} evaluation stories to {OUT}")


if __name__ == "__main__":
    main()
