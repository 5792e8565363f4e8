#!/usr/bin/env python3
"""Opt-in (slow: llama-cpp-python compiles llama.cpp): a LoRA adapter exported by
`peft export --format gguf` loaded in llama.cpp on top of the exported base model, and llama.cpp's
logits compared with peft.cpp's, for Qwen2 and Llama (whose Q / K rows are permuted).

    pip install llama-cpp-python   # into the interpreter that runs this
    ctest --test-dir build -R llama_cpp   # configured with -DPEFT_TEST_LLAMA_CPP=ON

Prints one line per case with the largest absolute logit difference, and fails above 1e-5
(llama.cpp computes in f32, KV cache included, with its own kernel order)."""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    from llama_cpp import Llama
except ImportError as e:
    print(f"SKIP: {e} (pip install llama-cpp-python)")
    sys.exit(77)

import model_ref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOLERANCE = 1e-5


def run(args):
    r = subprocess.run([model_ref.peft_binary(), *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: peft {' '.join(args)}\n{r.stderr}")
    return r.stdout


def case(tmp, arch, targets):
    model = os.path.join(tmp, arch)
    run(["init", "--arch", arch, "--preset", "tiny", "--seed", "9", "--out", model])
    with open(os.path.join(model, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    rng = np.random.default_rng(1)
    data = os.path.join(tmp, f"{arch}.jsonl")
    with open(data, "w") as f:
        for _ in range(8):
            f.write(json.dumps({"input_ids": rng.integers(1, vocab, 16).tolist()}) + "\n")
    adapter = os.path.join(tmp, f"{arch}-lora")
    run(["train", "--model", model, "--data", data, "--out", adapter, "--max-steps", "5",
         "--lr", "0.05", "--r", "4", "--lora-alpha", "8", "--target-modules", targets])
    base_gguf, lora_gguf = os.path.join(tmp, f"{arch}.gguf"), os.path.join(tmp, f"{arch}-lora.gguf")
    run(["export", "--model", model, "--format", "gguf", "--dtype", "f32", "--out", base_gguf])
    run(["export", "--model", model, "--adapter", adapter, "--format", "gguf", "--out", lora_gguf])

    ids = rng.integers(1, vocab, 12).tolist()
    ours = model_ref.run_oracle(model, {"input_ids": torch.tensor([ids])}, grads=False,
                                extra_args=["--adapter", adapter])["logits"][0]
    ours_base = model_ref.run_oracle(model, {"input_ids": torch.tensor([ids])},
                                     grads=False)["logits"][0]
    rows = []
    for label, lora, want in (("base", None, ours_base), ("adapter", lora_gguf, ours)):
        llm = Llama(model_path=base_gguf, lora_path=lora, logits_all=True, n_ctx=64,
                    n_threads=2, type_k=0, type_v=0, verbose=False)  # f32 KV cache
        llm.eval(ids)
        theirs = np.array(llm.scores[:len(ids)], dtype=np.float32)
        diff = float(np.abs(theirs - want).max())
        rows.append((label, diff))
        print(f"{arch:8s} {label:8s} max |llama.cpp − peft.cpp| = {diff:.2e} "
              f"(logits up to {float(np.abs(want).max()):.2f}; adapter changes them by "
              f"{float(np.abs(ours - ours_base).max()):.2e})")
    return rows


def main():
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for arch, targets in (("qwen2", "q_proj,k_proj,v_proj,o_proj"),
                              ("llama", "q_proj,k_proj,v_proj,o_proj,gate_proj")):
            for _, diff in case(tmp, arch, targets):
                worst = max(worst, diff)
    if worst > TOLERANCE:
        sys.exit(f"FAIL: logits differ by {worst:.2e} > {TOLERANCE}")
    print("PASS")


if __name__ == "__main__":
    main()
