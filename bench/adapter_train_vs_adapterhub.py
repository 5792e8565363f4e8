#!/usr/bin/env python3
"""Bottleneck-adapter training: `peft train --method adapter` vs AdapterHub (`adapters` 1.3.0 on
PyTorch, the venv of scripts/setup-adapters-python.sh) on the same model shape, batch, sequence
length and thread count, in one invocation.

  python3 bench/adapter_train_vs_adapterhub.py [--shape qwen2-0.5b|bert-base|all] [--steps 3] [--threads 2]

Models: `peft init --arch qwen2 --preset qwen2-0.5b` and `peft init --arch bert --preset bert-base`
(random f32 weights), loaded by both sides. For Houlsby (double_seq_bn) and Pfeiffer (seq_bn) at
the default reduction factor 16: batch 1 × 256 random token ids (BERT: 15 % of the positions carry
labels, the same on both sides), AdamW on the adapter weights only (AdapterHub's train_adapter()
on BertForMaskedLM also unfreezes cls.predictions.transform: frozen here). Each side runs --steps
timed steps after one warm-up step (ours: step times from metrics.jsonl's cumulative tokens_per_s;
AdapterHub: wall time per step; medians). Prints one JSON line per shape and kind: trainable
parameters and their share of the model, tokens/s of each, ours / AdapterHub (> 1: peft.cpp is
faster), and the load average before and after (the machine may be shared)."""
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
import test_peft_adapter  # noqa: E402  (re-runs this script under the AdapterHub venv)

import adapters  # noqa: E402
import torch  # noqa: E402
from adapters import DoubleSeqBnConfig, SeqBnConfig  # noqa: E402

SHAPES = {"qwen2-0.5b": "qwen2", "bert-base": "bert"}
KINDS = {"houlsby": DoubleSeqBnConfig, "pfeiffer": SeqBnConfig}
SEQ = 256


def batch(vocab, bert, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (1, SEQ), generator=g)
    if not bert:
        return ids, ids.clone()
    labels = torch.full_like(ids, -100)
    pick = torch.rand((1, SEQ), generator=g) < 0.15
    labels[pick] = ids[pick]
    return ids, labels


def peer(model_dir, arch, kind, steps, threads):
    from transformers import BertForMaskedLM, Qwen2ForCausalLM
    torch.set_num_threads(threads)
    cls = BertForMaskedLM if arch == "bert" else Qwen2ForCausalLM
    model = cls.from_pretrained(model_dir, attn_implementation="eager", torch_dtype=torch.float32)
    adapters.init(model)
    model.add_adapter("a", config=KINDS[kind]())
    model.train_adapter("a")
    for n, p in model.named_parameters():
        p.requires_grad_(".adapters." in n)
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for n, p in model.named_parameters() if ".adapters." not in n)
    opt = torch.optim.AdamW(params, lr=1e-4)
    ids, labels = batch(model.config.vocab_size, arch == "bert", 1)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - t0)
    return {"step_times": times, "trainable": sum(p.numel() for p in params), "model_params": total}


def ours(peft_bin, model_dir, data, out, kind, steps, threads):
    r = subprocess.run([peft_bin, "train", "--model", model_dir, "--data", data, "--out", out, "--overwrite",
                        "--method", "adapter", "--adapter-kind", kind, "--max-steps", str(steps + 1),
                        "--batch-size", "1", "--max-len", str(SEQ), "--threads", str(threads), "--lr", "1e-4",
                        "--json"], check=True, capture_output=True, text=True)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rates = [json.loads(line)["tokens_per_s"] for line in f if "tokens_per_s" in json.loads(line)]
    elapsed = [(k + 1) * SEQ / r for k, r in enumerate(rates)]
    steps_s = [b - a for a, b in zip(elapsed, elapsed[1:])]  # step times, the warm-up step dropped
    return steps_s, json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=list(SHAPES) + ["all"], default="all")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peft", default=os.path.join(ROOT, "build", "peft"))
    ap.add_argument("--peer-only", nargs=3, metavar=("MODEL_DIR", "ARCH", "KIND"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peer_only:
        print(json.dumps(peer(*a.peer_only, a.steps, a.threads)))
        return
    shapes = list(SHAPES) if a.shape == "all" else [a.shape]
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            arch = SHAPES[shape]
            model_dir = os.path.join(tmp, shape)
            subprocess.run([a.peft, "init", "--arch", arch, "--preset", shape, "--seed", "1", "--out", model_dir],
                           check=True, capture_output=True)
            with open(os.path.join(model_dir, "config.json")) as f:
                vocab = json.load(f)["vocab_size"]
            data = os.path.join(tmp, shape + ".jsonl")
            with open(data, "w") as f:
                for k in range(a.steps + 1):
                    ids, labels = batch(vocab, arch == "bert", 10 + k)
                    f.write(json.dumps({"input_ids": ids[0].tolist(), "labels": labels[0].tolist()}) + "\n")
            for kind in KINDS:
                load_before = os.getloadavg()[0]
                our_times, our_json = ours(a.peft, model_dir, data, os.path.join(tmp, "out"), kind, a.steps,
                                           a.threads)
                # AdapterHub in its own process with OpenMP threads passive (two spinning pools
                # make PyTorch slower on 2 threads than on 1).
                env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
                r = subprocess.run([sys.executable, __file__, "--steps", str(a.steps), "--threads", str(a.threads),
                                    "--peer-only", model_dir, arch, kind], capture_output=True, text=True, env=env,
                                   check=True)
                hub = json.loads(r.stdout.strip().splitlines()[-1])
                ours_tps = SEQ / statistics.median(our_times)
                hub_tps = SEQ / statistics.median(hub["step_times"])
                print(json.dumps({
                    "bench": "adapter_train", "shape": shape, "kind": kind, "threads": a.threads,
                    "tokens_per_step": SEQ, "steps": a.steps,
                    "trainable_params": our_json["trainable_params"], "adapterhub_trainable": hub["trainable"],
                    "trainable_share": our_json["trainable_params"] / hub["model_params"],
                    "ours_tokens_per_s": round(ours_tps, 2), "adapterhub_tokens_per_s": round(hub_tps, 2),
                    "ratio": round(ours_tps / hub_tps, 3),
                    "load_avg_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)]}), flush=True)


if __name__ == "__main__":
    main()
