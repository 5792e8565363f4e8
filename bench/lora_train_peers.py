#!/usr/bin/env python3
"""LoRA training throughput and peak RSS: `peft train` (f32 base, bf16 base) against the latest
PyTorch + transformers + PEFT from PyPI in each of its fast modes (f32, bf16 autocast, bf16
weights), all in one invocation, interleaved and repeated so that a shared machine's load falls
on every side alike.

  scripts/setup-bench-peers.sh            # build/.venv-bench: PyPI torch, transformers, peft
  build/.venv-bench/bin/python bench/lora_train_peers.py --config medium --threads 2 --repeats 3

Model and data: one random Qwen2-architecture model folder (shapes of bench/lora_train_vs_torch.py)
and random token ids, written once and read by both sides. LoRA r 8, alpha 16 on q, k, v, o, gate,
up, down; AdamW on the LoRA parameters. Each run does --steps timed steps after one warm-up step;
its rate is the median step's. Prints one JSON line per run ({"side", "mode", "repeat",
"tokens_per_s", "peak_rss_mb", "load1"}) and a closing summary line: per side and mode the median
over repeats, and ours' best / the peer's best mode.

The peer runs in its own process with its threads set by torch.set_num_threads and
OMP_WAIT_POLICY=PASSIVE by default (--peer-wait ACTIVE gives it spinning workers, faster on an
idle machine); ours runs with no environment variables."""
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
SHAPES = {
    "tiny": dict(hidden=256, layers=4, heads=4, kv_heads=2, inter=688, vocab=8192, seq=256, batch=4),
    "medium": dict(hidden=512, layers=8, heads=8, kv_heads=2, inter=1408, vocab=32000, seq=256, batch=4),
    "qwen2-0.5b": dict(hidden=896, layers=24, heads=14, kv_heads=2, inter=4864, vocab=151936, seq=512, batch=1),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_model(path, c):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["inter"],
                      num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
                      num_key_value_heads=c["kv_heads"], max_position_embeddings=4096,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(path, safe_serialization=True)


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def peer_run(model_dir, data, c, steps, threads, mode):
    """transformers + PEFT: forward, backward, AdamW on the LoRA parameters; step times."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2ForCausalLM
    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if mode in ("bf16", "ipex") else torch.float32
    model = Qwen2ForCausalLM.from_pretrained(model_dir, dtype=dtype)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, lora_dropout=0.0))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if mode == "ipex":
        import intel_extension_for_pytorch as ipex
        model, opt = ipex.optimize(model, optimizer=opt, dtype=torch.bfloat16)
    with open(data) as f:
        rows = [json.loads(line)["input_ids"] for line in f]
    times = []
    for i in range(steps + 1):
        ids = torch.tensor(rows[i * c["batch"]:(i + 1) * c["batch"]])
        t0 = time.perf_counter()
        opt.zero_grad()
        if mode == "autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss
        else:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return times


def ours_run(peft_bin, model_dir, data, out, c, steps, threads, mode):
    cmd = [peft_bin, "train", "--model", model_dir, "--data", data, "--out", out, "--overwrite",
           "--max-steps", str(steps + 1), "--batch-size", str(c["batch"]), "--max-len", str(c["seq"]),
           "--r", "8", "--lora-alpha", "16", "--target-modules", ",".join(TARGETS),
           "--threads", str(threads), "--lr", "1e-4", "--json"]
    dtype, _, wait = mode.partition("+")  # e.g. "bf16+passive": OMP_WAIT_POLICY=PASSIVE for ours too
    if dtype != "f32":
        cmd += ["--base-dtype", dtype]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "PEFT_GEMM", "KMP_"))}
    if wait:
        env["OMP_WAIT_POLICY"] = wait.upper()
    r = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rates = [json.loads(line)["tokens_per_s"] for line in f]  # cumulative since the start
    elapsed = [(k + 1) * c["batch"] * c["seq"] / r for k, r in enumerate(rates)]
    step_s = [b - a for a, b in zip(elapsed, elapsed[1:])]
    return step_s, json.loads(r.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=list(SHAPES), default="medium")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ours", default="f32,bf16",
                    help="our modes: base dtypes (f32, bf16, q8_0, q4_0), '+passive' for OMP_WAIT_POLICY=PASSIVE")
    ap.add_argument("--peer", default="f32,autocast,bf16", help="peer modes: f32, autocast, bf16, ipex")
    ap.add_argument("--peer-wait", default="PASSIVE", help="OMP_WAIT_POLICY of the peer ('' leaves it unset)")
    ap.add_argument("--peft", default=os.path.join(ROOT, "build", "peft"))
    ap.add_argument("--ipex-python", default=os.path.join(ROOT, "build", ".venv-bench-ipex", "bin", "python"),
                    help="interpreter for the ipex mode (IPEX pins its own torch)")
    ap.add_argument("--peer-only", nargs=3, metavar=("MODEL", "DATA", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    c = SHAPES[a.config]
    if a.peer_only:
        times = peer_run(a.peer_only[0], a.peer_only[1], c, a.steps, a.threads, a.peer_only[2])
        print(json.dumps({"step_times": times, "peak_rss_mb": peak_rss_mb()}))
        return
    import torch
    import transformers
    import peft
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    tokens = c["batch"] * c["seq"]
    runs = [("ours", m) for m in a.ours.split(",") if m] + [("peer", m) for m in a.peer.split(",") if m]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "model")
        make_model(model_dir, c)
        data = os.path.join(tmp, "data.jsonl")
        g = torch.Generator().manual_seed(2)
        with open(data, "w") as f:
            for _ in range(c["batch"] * (a.steps + 1)):
                f.write(json.dumps({"input_ids": torch.randint(0, c["vocab"], (c["seq"],), generator=g).tolist()}) + "\n")
        for rep in range(a.repeats):
            for side, mode in runs:
                load = os.getloadavg()[0]
                try:
                    if side == "ours":
                        times, rss = ours_run(a.peft, model_dir, data, os.path.join(tmp, "out"), c, a.steps,
                                              a.threads, mode)
                    else:
                        env = dict(os.environ)
                        if a.peer_wait:
                            env["OMP_WAIT_POLICY"] = a.peer_wait
                        py = a.ipex_python if mode == "ipex" else sys.executable
                        r = subprocess.run([py, __file__, "--config", a.config, "--steps", str(a.steps),
                                            "--threads", str(a.threads), "--peer-only", model_dir, data, mode],
                                           capture_output=True, text=True, env=env)
                        if r.returncode != 0:
                            raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed")
                        p = json.loads(r.stdout.strip().splitlines()[-1])
                        times, rss = p["step_times"], p["peak_rss_mb"]
                except Exception as e:  # noqa: BLE001 (a peer mode that cannot run here is reported)
                    print(json.dumps({"side": side, "mode": mode, "repeat": rep, "error": str(e)[:300]}), flush=True)
                    continue
                rec = {"side": side, "mode": mode, "repeat": rep, "tokens_per_s": round(tokens / statistics.median(times), 1),
                       "peak_rss_mb": round(rss, 1), "load1": round(load, 2)}
                results.setdefault((side, mode), []).append(rec)
                print(json.dumps(rec), flush=True)
    med = {f"{s}:{m}": {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
                        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs)} for (s, m), rs in results.items()}
    best = {}
    for side in ("ours", "peer"):
        rates = {k: v["tokens_per_s"] for k, v in med.items() if k.startswith(side + ":")}
        rss = {k: v["peak_rss_mb"] for k, v in med.items() if k.startswith(side + ":")}
        if rates:
            best[side] = max(rates, key=rates.get)
            best[side + "_min_rss"] = min(rss, key=rss.get)
    summary = {"bench": "lora_train_peers", "config": a.config, "threads": a.threads, "steps": a.steps,
               "repeats": a.repeats, "tokens_per_step": tokens, "peer_wait": a.peer_wait, **versions, "medians": med}
    if "ours" in best and "peer" in best:
        summary["best_ours"], summary["best_peer"] = best["ours"], best["peer"]
        summary["speed_ratio_best"] = round(med[best["ours"]]["tokens_per_s"] / med[best["peer"]]["tokens_per_s"], 2)
        summary["rss_ratio_best"] = round(med[best["ours_min_rss"]]["peak_rss_mb"] / med[best["peer_min_rss"]]["peak_rss_mb"], 2)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
