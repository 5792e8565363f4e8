#!/usr/bin/env python3
"""LoRA training throughput and peak RSS: `peft train` (f32 base, bf16 base) against the latest
PyTorch + transformers + PEFT from PyPI in each of its fast modes (f32, bf16 autocast, bf16
weights), all in one invocation, interleaved and repeated so that a shared machine's load falls
on every side alike.

  scripts/setup-bench-peers.sh            # build/.venv-bench: PyPI torch, transformers, peft
  build/.venv-bench/bin/python bench/lora_train_peers.py --config medium --threads 2 --repeats 3

Model and data: one random Qwen2-architecture model folder (bench_common.SHAPES)
and random token ids, written once and read by both sides. LoRA r 8, alpha 16 on q, k, v, o, gate,
up, down; AdamW on the LoRA parameters. Each run does --steps timed steps after one warm-up step;
its rate is the median step's. Prints one JSON line per run ({"side", "mode", "repeat",
"tokens_per_s", "peak_rss_mb", "load1"}) and a closing summary line: per side and mode the median
over repeats, and ours' best / the peer's best mode.

The peer runs in its own process with its threads set by torch.set_num_threads and
OMP_WAIT_POLICY=PASSIVE by default (--peer-wait ACTIVE gives it spinning workers, faster on an
idle machine); ours runs without OpenMP variables, i.e. with peft's own default wait policy
(docs/performance.md, "Robust under load")."""
import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402


def ours_run(peft_bin, model_dir, data, out, c, steps, threads, mode):
    """mode: a base dtype, "+passive" for OMP_WAIT_POLICY=PASSIVE (e.g. "bf16+passive")."""
    dtype, _, wait = mode.partition("+")
    env = bc.clean_env({"OMP_WAIT_POLICY": wait.upper()} if wait else None)
    return bc.ours_train(peft_bin, model_dir, data, out, c, steps, threads, dtype, env=env)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=list(bc.SHAPES), default="medium")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ours", default="f32,bf16",
                    help="our modes: base dtypes (f32, bf16, q8_0, q4_0), '+passive' for OMP_WAIT_POLICY=PASSIVE")
    ap.add_argument("--peer", default="f32,autocast,bf16", help="peer modes: f32, autocast, bf16, ipex")
    ap.add_argument("--peer-wait", default="PASSIVE", help="OMP_WAIT_POLICY of the peer ('' leaves it unset)")
    ap.add_argument("--peft", default=bc.PEFT_BIN)
    ap.add_argument("--ipex-python", default=os.path.join(bc.ROOT, "build", ".venv-bench-ipex", "bin", "python"),
                    help="interpreter for the ipex mode (IPEX pins its own torch)")
    ap.add_argument("--peer-only", nargs=3, metavar=("MODEL", "DATA", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    c = bc.SHAPES[a.config]
    if a.peer_only:
        rows = bc.read_token_rows(a.peer_only[1])
        times = bc.peer_train(a.peer_only[0], rows, c, a.steps, a.threads, a.peer_only[2])
        print(json.dumps({"step_times": times, "peak_rss_mb": bc.peak_rss_mb()}))
        return
    import torch
    import transformers
    import peft
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    tokens = c["batch"] * c["seq"]
    runs = bc.runs_of(a.ours, a.peer)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, data = bc.make_inputs(tmp, c, a.steps)
        for rep in range(a.repeats):
            for side, mode in runs:
                load = bc.load1()
                try:
                    if side == "ours":
                        times, rss = ours_run(a.peft, model_dir, data, os.path.join(tmp, "out"), c, a.steps,
                                              a.threads, mode)
                    else:
                        env = dict(os.environ)
                        if a.peer_wait:
                            env["OMP_WAIT_POLICY"] = a.peer_wait
                        py = a.ipex_python if mode == "ipex" else sys.executable
                        p = bc.run_json([py, __file__, "--config", a.config, "--steps", str(a.steps),
                                         "--threads", str(a.threads), "--peer-only", model_dir, data, mode], env)
                        times, rss = p["step_times"], p["peak_rss_mb"]
                except Exception as e:  # noqa: BLE001 (a peer mode that cannot run here is reported)
                    print(json.dumps({"side": side, "mode": mode, "repeat": rep, "error": str(e)[:300]}), flush=True)
                    continue
                rec = {"side": side, "mode": mode, "repeat": rep, "tokens_per_s": round(tokens / statistics.median(times), 1),
                       "peak_rss_mb": round(rss, 1), "load1": load}
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
