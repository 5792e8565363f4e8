#!/usr/bin/env python3
"""LoRA training throughput: `peft train` vs Hugging Face PEFT (transformers + PEFT on PyTorch,
pinned in tests/requirements.txt) vs the plain-PyTorch peer in ../shared/bench, on the same
Qwen2-architecture model shape, batch and thread count, in one invocation.

  python3 bench/lora_train_vs_torch.py [--config medium] [--threads 2] [--steps 8] [--peft build/peft]

Shapes follow ../shared/bench/torch_lora_qwen2.py (tiny / medium / qwen2-0.5b; bench_common.py, which
bench/lora_train_peers.py and bench/under_load.py share); LoRA r 8, alpha 16 on q, k, v, o, gate,
up, down; AdamW on the LoRA parameters; the same random token ids for both sides; f32. Each side
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
import model_ref  # noqa: E402

model_ref.ensure_env(extra_modules=("peft",))

sys.path.insert(0, HERE)
import bench_common as bc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=list(bc.SHAPES), default="medium")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--peft", default=bc.PEFT_BIN)
    ap.add_argument("--shared-bench", default=os.path.join(ROOT, "..", "shared", "bench", "torch_lora_qwen2.py"))
    ap.add_argument("--peer-only", nargs=2, metavar=("MODEL_DIR", "DATA"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    c = bc.SHAPES[a.config]
    if a.peer_only:
        rows = bc.read_token_rows(a.peer_only[1])
        times = bc.peer_train(a.peer_only[0], rows, c, a.steps, a.threads, "f32", attn_implementation="eager")
        print(json.dumps({"step_times": times, "peak_rss_mb": bc.peak_rss_mb()}))
        return
    tokens = c["batch"] * c["seq"]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, data = bc.make_inputs(tmp, c, a.steps)
        result = {"bench": "lora_train", "config": a.config, "threads": a.threads, "tokens_per_step": tokens,
                  "cpu": bc.cpu_name()}
        our_times, our_rss = bc.ours_train(a.peft, model_dir, data, os.path.join(tmp, "out"), c, a.steps, a.threads)
        result["ours_tokens_per_s"] = tokens / statistics.median(our_times)
        result["ours_peak_rss_mb"] = our_rss
        # The peer in its own process with OpenMP threads passive (as ../shared/bench advises):
        # two pools spinning against each other make PyTorch slower on 2 threads than on 1.
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        r = subprocess.run([sys.executable, __file__, "--config", a.config, "--steps", str(a.steps), "--threads",
                            str(a.threads), "--peer-only", model_dir, data], capture_output=True, text=True, env=env,
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
