#!/usr/bin/env python3
"""LoRA training throughput: `peft train` vs Hugging Face PEFT (transformers + PEFT on PyTorch,
pinned in tests/requirements.txt) vs the plain-PyTorch peer in ../shared/bench, on the same
Qwen2-architecture model shape, batch and thread count, in one invocation.

  python3 bench/lora_train_vs_torch.py [--config medium] [--threads 2] [--steps 8] [--peft build/peft]

Shapes follow ../shared/bench/torch_lora_qwen2.py (tiny / medium / qwen2-0.5b); LoRA r 8, alpha 16
on q, k, v, o, gate, up, down; AdamW on the LoRA parameters; random token ids; f32. Each side
runs `--steps` timed steps after one warm-up step (ours: step times from metrics.jsonl's
cumulative tokens_per_s; PEFT: wall time per step; both medians). Prints one JSON line: tokens/s of each
and the ratios ours / peer (> 1: peft.cpp is faster), peak RSS of ours and of the PEFT process,
with the machine's CPU and thread count.
Needs the reference environment (build/.venv, made by scripts/setup-python.sh)."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
import model_ref  # noqa: E402

model_ref.ensure_env(extra_modules=("peft",))

import torch  # noqa: E402

SHAPES = {  # as ../shared/bench/torch_lora_qwen2.py
    "tiny": dict(hidden=256, layers=4, heads=4, kv_heads=2, inter=688, vocab=8192, seq=256, batch=4),
    "medium": dict(hidden=512, layers=8, heads=8, kv_heads=2, inter=1408, vocab=32000, seq=256, batch=4),
    "qwen2-0.5b": dict(hidden=896, layers=24, heads=14, kv_heads=2, inter=4864, vocab=151936, seq=512, batch=1),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_model(path, c):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["inter"],
                      num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
                      num_key_value_heads=c["kv_heads"], max_position_embeddings=4096,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(path, safe_serialization=True)


def peft_peer(model_dir, c, steps, threads):
    """Step times of transformers + PEFT: forward, backward, AdamW on the LoRA parameters."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2ForCausalLM
    torch.set_num_threads(threads)
    model = get_peft_model(Qwen2ForCausalLM.from_pretrained(model_dir, attn_implementation="eager"),
                           LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, lora_dropout=0.0))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, c["vocab"], (c["batch"], c["seq"]), generator=g)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - t0)
    return times


def ours(peft_bin, model_dir, data, out, c, steps, threads):
    r = subprocess.run([peft_bin, "train", "--model", model_dir, "--data", data, "--out", out, "--overwrite",
                    "--max-steps", str(steps + 1), "--batch-size", str(c["batch"]), "--max-len", str(c["seq"]),
                    "--r", "8", "--lora-alpha", "16", "--target-modules", ",".join(TARGETS),
                    "--threads", str(threads), "--lr", "1e-4", "--json"], check=True, capture_output=True, text=True)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rates = [json.loads(line)["tokens_per_s"] for line in f]  # cumulative since the start
    elapsed = [(k + 1) * c["batch"] * c["seq"] / r for k, r in enumerate(rates)]
    steps_s = [b - a for a, b in zip(elapsed, elapsed[1:])]  # step times, the warm-up step dropped
    return steps_s, json.loads(r.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def peak_rss_mb():
    """This process's peak RSS (VmHWM: unlike ru_maxrss it does not count a parent before exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=list(SHAPES), default="medium")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--peft", default=os.path.join(ROOT, "build", "peft"))
    ap.add_argument("--shared-bench", default=os.path.join(ROOT, "..", "shared", "bench", "torch_lora_qwen2.py"))
    ap.add_argument("--peer-only", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    a = ap.parse_args()
    c = SHAPES[a.config]
    if a.peer_only:
        times = peft_peer(a.peer_only, c, a.steps, a.threads)
        rss_mb = peak_rss_mb()
        print(json.dumps({"step_times": times, "peak_rss_mb": rss_mb}))
        return
    tokens = c["batch"] * c["seq"]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "model")
        make_model(model_dir, c)
        data = os.path.join(tmp, "data.jsonl")
        g = torch.Generator().manual_seed(2)
        with open(data, "w") as f:
            for _ in range(c["batch"] * (a.steps + 1)):
                ids = torch.randint(0, c["vocab"], (c["seq"],), generator=g).tolist()
                f.write(json.dumps({"input_ids": ids}) + "\n")
        result = {"bench": "lora_train", "config": a.config, "threads": a.threads, "tokens_per_step": tokens,
                  "cpu": cpu_name()}
        our_times, our_rss = ours(a.peft, model_dir, data, os.path.join(tmp, "out"), c, a.steps, a.threads)
        result["ours_tokens_per_s"] = tokens / statistics.median(our_times)
        result["ours_peak_rss_mb"] = our_rss
        # The peer in its own process with OpenMP threads passive (as ../shared/bench advises):
        # two pools spinning against each other make PyTorch slower on 2 threads than on 1.
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        r = subprocess.run([sys.executable, __file__, "--config", a.config, "--steps", str(a.steps), "--threads",
                            str(a.threads), "--peer-only", model_dir], capture_output=True, text=True, env=env,
                           check=True)
        peer = json.loads(r.stdout.strip().splitlines()[-1])
        result["hf_peft_tokens_per_s"] = tokens / statistics.median(peer["step_times"])
        result["hf_peft_peak_rss_mb"] = peer["peak_rss_mb"]
        result["ratio_vs_hf_peft"] = result["ours_tokens_per_s"] / result["hf_peft_tokens_per_s"]
        if os.path.exists(a.shared_bench):
            r = subprocess.run([sys.executable, a.shared_bench, "--config", a.config, "--mode", "lora",
                                "--threads", str(a.threads), "--steps", str(a.steps)],
                               capture_output=True, text=True, env=env)
            if r.returncode == 0:
                peer = json.loads(r.stdout.strip().splitlines()[-1])
                result["plain_torch_tokens_per_s"] = peer.get("tokens_per_s")
                if peer.get("tokens_per_s"):
                    result["ratio_vs_plain_torch"] = result["ours_tokens_per_s"] / peer["tokens_per_s"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
