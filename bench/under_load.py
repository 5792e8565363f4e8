#!/usr/bin/env python3
"""Robustness under load (issue 13, target 5): the share of its idle LoRA training rate that
`peft train` keeps when another busy process competes for the cores, against the same share for
transformers + PEFT, by default (no environment variables) and with OpenMP wait settings.

  scripts/setup-bench-peers.sh     # build/.venv-bench: PyPI torch, transformers, peft
  build/.venv-bench/bin/python bench/under_load.py --config medium --threads 2 --repeats 2

One random model folder and token data (bench_common, as bench/lora_train_peers.py). Each repeat
runs every variant twice, interleaved: "idle" (nothing of ours competing; the machine's own load is
reported) and "loaded" (while `stress-ng --cpu N` spins N busy processes, default 1). Variants:
  ours:default        peft train with no OpenMP variables (what a user gets)
  ours:spin=N         GOMP_SPINCOUNT=N (ours:spin=300000 is libgomp's own default, i.e. peft
                      before it chose a spin count itself)
  ours:passive        OMP_WAIT_POLICY=PASSIVE;  ours:active: OMP_WAIT_POLICY=ACTIVE
  peer:MODE[+passive] transformers + PEFT in MODE (f32, autocast, bf16), its default OpenMP
                      settings or OMP_WAIT_POLICY=PASSIVE
Prints one JSON line per run ({"condition", "side", "variant", "repeat", "tokens_per_s", "load1"})
and a summary line: per variant the median idle and loaded rates and kept = loaded / idle, and
ours:default's kept over the best peer variant's kept."""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402


def ours_env(variant):
    name, _, value = variant.partition("=")
    extra = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "active": {"OMP_WAIT_POLICY": "ACTIVE"},
             "spin": {"GOMP_SPINCOUNT": value}}[name]
    return bc.clean_env(extra)


def run_one(a, side, variant, model_dir, data, tmp, c):
    if side == "ours":
        times, _ = bc.ours_train(a.peft, model_dir, data, os.path.join(tmp, "out"), c, a.steps, a.threads,
                                 a.ours_dtype, env=ours_env(variant))
        return times
    mode, _, wait = variant.partition("+")
    env = bc.clean_env({"OMP_WAIT_POLICY": "PASSIVE"} if wait == "passive" else {})
    return bc.run_json([sys.executable, __file__, "--config", a.config, "--steps", str(a.steps), "--threads",
                        str(a.threads), "--peer-only", model_dir, data, mode], env)["step_times"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=list(bc.SHAPES), default="medium")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--ours", default="default,spin=300000,passive", help="our variants (see the docstring)")
    ap.add_argument("--ours-dtype", default="f32", help="--base-dtype of ours (f32, bf16, q8_0, q4_0)")
    ap.add_argument("--peer", default="bf16,bf16+passive", help="peer variants (see the docstring)")
    ap.add_argument("--stress", type=int, default=1, help="busy processes of the loaded condition")
    ap.add_argument("--peft", default=bc.PEFT_BIN)
    ap.add_argument("--peer-only", nargs=3, metavar=("MODEL", "DATA", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    c = bc.SHAPES[a.config]
    if a.peer_only:
        rows = bc.read_token_rows(a.peer_only[1])
        print(json.dumps({"step_times": bc.peer_train(a.peer_only[0], rows, c, a.steps, a.threads, a.peer_only[2])}))
        return
    stress = shutil.which("stress-ng")
    if not stress:
        sys.exit("under_load.py: needs stress-ng (apt-get install stress-ng)")
    tokens = c["batch"] * c["seq"]
    runs = bc.runs_of(a.ours, a.peer)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, data = bc.make_inputs(tmp, c, a.steps)
        for rep in range(a.repeats):
            for side, variant in runs:
                for condition in ("idle", "loaded"):
                    proc = None
                    if condition == "loaded":
                        proc = subprocess.Popen([stress, "--cpu", str(a.stress), "--quiet"],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                start_new_session=True)
                        time.sleep(1.0)
                    load = bc.load1()
                    try:
                        times = run_one(a, side, variant, model_dir, data, tmp, c)
                    except Exception as e:  # noqa: BLE001 (reported, the others still run)
                        print(json.dumps({"condition": condition, "side": side, "variant": variant, "repeat": rep,
                                          "error": str(e)[:300]}), flush=True)
                        continue
                    finally:
                        if proc:
                            os.killpg(proc.pid, signal.SIGTERM)
                            proc.wait()
                    rec = {"bench": "under_load", "config": a.config, "condition": condition, "side": side,
                           "variant": variant, "repeat": rep, "stress_cpus": a.stress if proc else 0,
                           "tokens_per_s": round(tokens / statistics.median(times), 1), "load1": load}
                    results.setdefault((side, variant, condition), []).append(rec["tokens_per_s"])
                    print(json.dumps(rec), flush=True)
    med = {}
    for side, variant in runs:
        idle = results.get((side, variant, "idle"))
        loaded = results.get((side, variant, "loaded"))
        if idle and loaded:
            i, lo = statistics.median(idle), statistics.median(loaded)
            med[f"{side}:{variant}"] = {"idle": i, "loaded": lo, "kept": round(lo / i, 3)}
    summary = {"bench": "under_load", "config": a.config, "threads": a.threads, "steps": a.steps,
               "repeats": a.repeats, "stress_cpus": a.stress, "ours_dtype": a.ours_dtype, "medians": med}
    peers = {k: v for k, v in med.items() if k.startswith("peer:")}
    if "ours:default" in med and peers:
        best = max(peers, key=lambda k: peers[k]["kept"])
        summary["best_peer_kept"] = best
        summary["kept_ratio_default_vs_peer"] = round(med["ours:default"]["kept"] / peers[best]["kept"], 2)
        fastest = max(peers, key=lambda k: peers[k]["loaded"])
        summary["loaded_speed_ratio_default_vs_fastest_peer"] = round(
            med["ours:default"]["loaded"] / peers[fastest]["loaded"], 2)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
