#!/usr/bin/env python3
"""Rewrite a `peft init --arch qwen2` folder as a random Qwen2 model of another size.

The presets jump from `small` (5 M parameters) to `qwen2-0.5b` (494 M); measurements that need
something in between (docs/distributed.md: the overlapped all-reduce of full fine-tuning) make
the folder with `peft init` (tokenizer files) and then resize it here: config.json and
model.safetensors are replaced, weights drawn N(0, 0.02), norms 1, biases 0. Standard library only.

  build/peft init --arch qwen2 --preset small --out /tmp/q32
  python3 bench/resize_qwen2.py /tmp/q32 --hidden 512 --layers 8 --intermediate 1536 --vocab 8192
"""
import argparse
import array
import json
import os
import random
import struct


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=1536)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    cfg_path = os.path.join(a.folder, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    if cfg.get("model_type") != "qwen2":
        raise SystemExit(f"{cfg_path}: model_type {cfg.get('model_type')!r}, expected qwen2")
    if a.hidden % a.heads or a.heads % a.kv_heads:
        raise SystemExit("--hidden must divide by --heads, and --heads by --kv-heads")
    cfg.update(hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=a.heads,
               num_key_value_heads=a.kv_heads, intermediate_size=a.intermediate,
               vocab_size=a.vocab, tie_word_embeddings=False)
    h, kv, m = a.hidden, a.hidden // a.heads * a.kv_heads, a.intermediate
    shapes = {"model.embed_tokens.weight": [a.vocab, h], "lm_head.weight": [a.vocab, h],
              "model.norm.weight": [h]}
    for i in range(a.layers):
        L = f"model.layers.{i}."
        shapes.update({
            L + "input_layernorm.weight": [h], L + "post_attention_layernorm.weight": [h],
            L + "self_attn.q_proj.weight": [h, h], L + "self_attn.q_proj.bias": [h],
            L + "self_attn.k_proj.weight": [kv, h], L + "self_attn.k_proj.bias": [kv],
            L + "self_attn.v_proj.weight": [kv, h], L + "self_attn.v_proj.bias": [kv],
            L + "self_attn.o_proj.weight": [h, h], L + "mlp.gate_proj.weight": [m, h],
            L + "mlp.up_proj.weight": [m, h], L + "mlp.down_proj.weight": [h, m]})
    # Weights are windows of one pool of normal draws at random offsets: the values only need to
    # look like an initialisation, and drawing every one in Python would take minutes.
    rng = random.Random(a.seed)
    pool = array.array("f", (rng.gauss(0.0, 0.02) for _ in range(1 << 20)))
    pool = pool + pool
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(shapes):
        n = 1
        for d in shapes[name]:
            n *= d
        if name.endswith("norm.weight"):
            data = array.array("f", [1.0]) * n
        elif name.endswith(".bias"):
            data = array.array("f", [0.0]) * n
        else:
            data = array.array("f")
            while len(data) < n:
                start = rng.randrange(1 << 20)
                take = min(n - len(data), 1 << 20)
                data.extend(pool[start:start + take])
        raw = data.tobytes()
        header[name] = {"dtype": "F32", "shape": shapes[name],
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(a.folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
    total = sum(len(b) for b in blobs) // 4
    print(f"{a.folder}: qwen2, {total / 1e6:.1f} M parameters")


if __name__ == "__main__":
    main()
