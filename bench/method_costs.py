#!/usr/bin/env python3
"""Cost of each PEFT method on a Qwen2-0.5B-shape model: trainable parameters as a share of the
model and training tokens/s. Standard library only; runs the `peft` program.

  python3 bench/method_costs.py [--peft build/peft] [--threads 2] [--steps 4] [--work DIR] [--passive]

Makes the model once with `peft init --arch qwen2 --preset qwen2-0.5b` (random weights, the
shapes of Qwen/Qwen2-0.5B: 24 layers, hidden 896, 14 heads / 2 KV heads, vocab 151936, tied
embeddings) in --work (kept between runs), writes random records of 256 tokens, then trains each
method for --steps steps at batch 1 x 256 tokens on --threads threads and reads `peft train
--json` and metrics.jsonl: trainable_params and tokens/s (real tokens per second of the steps after the
first step: the model load and the warm-up step excluded). Prints one JSON line per method, then
a Markdown table with the machine's load average before and after.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time

P = 20
METHODS = [
    ("LoRA r 8, q_proj + v_proj", ["--method", "lora", "--r", 8, "--lora-alpha", 16,
                                   "--target-modules", "q_proj,v_proj"]),
    ("LoRA r 8, all linear", ["--method", "lora", "--r", 8, "--lora-alpha", 16,
                              "--target-modules", "all-linear"]),
    (f"prompt tuning, P = {P}", ["--method", "prompt", "--num-virtual-tokens", P]),
    (f"P-Tuning v1 MLP, P = {P}", ["--method", "ptuning", "--num-virtual-tokens", P]),
    (f"P-Tuning v1 LSTM, P = {P}", ["--method", "ptuning", "--num-virtual-tokens", P,
                                    "--encoder-reparameterization-type", "LSTM"]),
    (f"prefix + projection, P = {P}", ["--method", "prefix", "--prefix-projection",
                                       "--num-virtual-tokens", P]),
    (f"prefix, no projection, P = {P}", ["--method", "prefix", "--num-virtual-tokens", P]),
    (f"P-Tuning v2, P = {P}", ["--method", "ptuning-v2", "--num-virtual-tokens", P]),
]


def run(cmd, env=None):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peft", default="build/peft")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--work", default="/tmp/peft-method-costs")
    ap.add_argument("--passive", action="store_true",
                    help="run peft with OMP_WAIT_POLICY=PASSIVE (idle OpenMP workers sleep instead of "
                         "spinning: much faster on a loaded machine, see docs/performance.md)")
    args = ap.parse_args()

    model = os.path.join(args.work, "qwen2-0.5b")
    if not os.path.exists(os.path.join(model, "config.json")):
        os.makedirs(args.work, exist_ok=True)
        run([args.peft, "init", "--arch", "qwen2", "--preset", "qwen2-0.5b", "--seed", 1, "--out", model])
    info = json.loads(run([args.peft, "info", model, "--json"]).strip().splitlines()[-1])
    total = info["params"]
    data = os.path.join(args.work, "data.jsonl")
    rng = random.Random(0)
    with open(data, "w") as f:
        for _ in range(args.steps + 2):
            ids = [rng.randrange(1000, 150000) for _ in range(args.tokens)]
            f.write(json.dumps({"input_ids": ids, "labels": ids}) + "\n")
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[0]

    env = dict(os.environ)
    if args.passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    rows = []
    for name, flags in METHODS:
        out = os.path.join(args.work, "run")
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.time()
        summary = json.loads(run([args.peft, "train", "--model", model, "--data", data, "--out", out,
                                  "--max-steps", args.steps, "--batch-size", 1, "--max-len", args.tokens,
                                  "--no-shuffle", "--threads", args.threads, "--json", *flags], env)
                             .strip().splitlines()[-1])
        # metrics.jsonl's tokens_per_s is cumulative from the start of training: the elapsed time
        # at step k is k * tokens / rate_k; the rate after the warm-up step is over steps 2..N.
        steps = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
        elapsed = [s["step"] * args.tokens / s["tokens_per_s"] for s in steps]
        rate = ((len(steps) - 1) * args.tokens / (elapsed[-1] - elapsed[0]) if len(steps) > 1
                else summary["tokens_per_s"])
        row = {"method": name, "trainable_params": summary["trainable_params"],
               "share": summary["trainable_params"] / total, "tokens_per_s": rate,
               "peak_rss_mb": summary["peak_rss_mb"], "wall_s": round(time.time() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[0]

    policy = "OMP_WAIT_POLICY=PASSIVE" if args.passive else "OpenMP's default (spinning) wait policy"
    print(f"\nQwen2-0.5B shape, {total:,} parameters; batch 1 x {args.tokens} tokens, {args.threads} threads, {policy}, "
          f"tokens/s over steps 2..{args.steps}; load average {load_before} before, {load_after} after\n")
    print("| method | trainable parameters | share of the model | train tokens/s | peak RSS |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['trainable_params']:,} | {100 * r['share']:.4f}% | "
              f"{r['tokens_per_s']:.1f} | {r['peak_rss_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
