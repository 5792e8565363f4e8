#!/usr/bin/env python3
"""Regenerates data/demo/: the embedded default job's data set and its small tokenizer.

The data are plain text (pretrain.jsonl) and instruction records about animals, colours and numbers, written from templates
(deterministic, no randomness). The tokenizer is a byte-level BPE trained on them with Hugging Face
`tokenizers` (pinned in tests/requirements.txt), so the demo model's vocabulary is small and the
whole demo runs in about a minute on 2 cores. Run: python3 scripts/make_demo_data.py
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "demo")

ANIMALS = [("cow", "moo"), ("dog", "woof"), ("cat", "meow"), ("duck", "quack"), ("sheep", "baa"),
           ("owl", "hoot"), ("lion", "roar"), ("horse", "neigh"), ("frog", "croak"), ("bee", "buzz"),
           ("pig", "oink"), ("mouse", "squeak")]
COLOURS = [("red", "blue", "purple"), ("blue", "yellow", "green"), ("red", "yellow", "orange"),
           ("black", "white", "grey"), ("red", "white", "pink"), ("blue", "white", "light blue")]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


# ChatML without a default system turn, so `peft generate --chat` works on the demo model.
CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
                 " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
                 "{{ '<|im_start|>assistant\\n' }}{% endif %}")


def records():
    train, evaluation = [], []
    for i, (animal, sound) in enumerate(ANIMALS):
        train.append({"instruction": f"What sound does a {animal} make?", "output": f"A {animal} says {sound}."})
        (evaluation if i % 3 == 0 else train).append(
            {"instruction": f"Which animal says {sound}?", "output": f"The {animal} says {sound}."})
    for i, (a, b, c) in enumerate(COLOURS):
        train.append({"instruction": f"What do you get when you mix {a} and {b}?", "output": f"Mixing {a} and {b} gives {c}."})
        (evaluation if i % 3 == 1 else train).append(
            {"instruction": f"Mix {b} with {a}. What colour is it?", "output": f"It is {c}."})
    for n in range(10):
        train.append({"instruction": f"What comes after {NUMBER_WORDS[n]}?", "output": f"After {NUMBER_WORDS[n]} comes {NUMBER_WORDS[n + 1]}."})
        (evaluation if n % 4 == 0 else train).append(
            {"instruction": f"Add one to {n}.", "output": f"{n} plus one is {n + 1}."})
    # Plain text for the demo's first stage (continued pre-training of the random base).
    pretrain = []
    for animal, sound in ANIMALS:
        pretrain.append({"text": f"The {animal} is an animal. A {animal} says {sound}. Which animal says {sound}? The {animal}."})
    for a, b, c in COLOURS:
        pretrain.append({"text": f"Mixing {a} and {b} gives {c}. If you mix {b} with {a}, it is {c}."})
    for n in range(10):
        pretrain.append({"text": f"After {NUMBER_WORDS[n]} comes {NUMBER_WORDS[n + 1]}. {n} plus one is {n + 1}."})
    return train, evaluation, pretrain


def main():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    train, evaluation, pretrain = records()
    os.makedirs(OUT, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("eval.jsonl", evaluation), ("pretrain.jsonl", pretrain)):
        with open(os.path.join(OUT, name), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")

    corpus = []
    for r in train + evaluation + pretrain:
        corpus.extend(v for v in r.values())
    corpus.append("".join(chr(c) for c in range(32, 127)))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.save(os.path.join(OUT, "tokenizer.json"))
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "bos_token": None,
                   "add_bos_token": False, "model_max_length": 512,
                   "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHAT_TEMPLATE}, f, indent=2)
        f.write("\n")
    print(f"wrote {len(train)} training and {len(evaluation)} evaluation records, vocabulary {tok.get_vocab_size()}")


if __name__ == "__main__":
    sys.exit(main())
