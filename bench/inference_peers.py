#!/usr/bin/env python3
"""Inference throughput: prefill (the prompt's forward pass) and greedy decoding (one token at a
time through the KV cache) of `peft generate` against transformers' generate() (PyTorch from PyPI)
and llama.cpp (llama-cpp-python from PyPI), all in one invocation, interleaved and repeated.

  scripts/setup-bench-peers.sh   # build/.venv-bench: PyPI torch, transformers, peft
  build/.venv-bench/bin/pip install llama-cpp-python gguf   # compiles llama.cpp (~15 min, 2 cores)
  build/.venv-bench/bin/python bench/inference_peers.py --config qwen2-0.5b --threads 2 --repeats 3

Model: one random Qwen2-architecture folder (bench_common.SHAPES, bf16 weights as Qwen2 ships
them) with Qwen2's real tokenizer (tests/assets/tokenizers/qwen2), read by every side; llama.cpp
reads it as GGUF files written by `peft export` (bf16, q8_0, f32; the export is checked against
the `gguf` package and against llama.cpp's logits by tests/python/). Prompt: the first
--prompt-tokens tokens of this repository's README.md; every side gets the same ids (ours
tokenizes the same text with its own Qwen2 tokenizer and reports its count). Then --new-tokens
greedy tokens (the peers cannot stop early; ours reports where it stopped at an end token).

Rates: prefill = prompt tokens / (time to the first new token's logits); decode = (new tokens − 1)
/ the time after that. Modes: the weights' dtype per side (ours: --base-dtype; the peer: the
dtype its model is loaded in; llama.cpp: the GGUF's). Prints one JSON line per run
({"side", "mode", "repeat", "prefill_tokens_per_s", "decode_tokens_per_s", "peak_rss_mb", ...})
and a summary line with the medians and, per dtype and best against best, ours / peer ratios."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402

TOKENIZER = os.path.join(bc.ROOT, "tests", "assets", "tokenizers", "qwen2")


def make_folder(path, c):
    """Random bf16 Qwen2 weights + the real Qwen2 tokenizer (tokenizer.json written by transformers)."""
    import torch
    from transformers import AutoTokenizer
    bc.make_model(path, c, dtype=torch.bfloat16)
    AutoTokenizer.from_pretrained(TOKENIZER).save_pretrained(path)


def prompt_ids(model_dir, n):
    """The first n token ids of README.md (repeated if it is shorter) and their text."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    with open(os.path.join(bc.ROOT, "README.md")) as f:
        text = f.read()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    while len(ids) < n:
        ids = ids + ids
    ids = ids[:n]
    return ids, tok.decode(ids)


# Runs argv[2:] and writes its peak RSS (wait4's ru_maxrss, KiB) to the file argv[1]. This small
# interpreter forks the command: a child forked from the bench itself would count the bench's own
# memory (the model it made) in its ru_maxrss.
RSS_WRAPPER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(cmd, env=None, timeout=None):
    """Runs cmd; returns (its last stdout line as JSON, its peak RSS in MB). A run past `timeout`
    seconds raises subprocess.TimeoutExpired (reported as that side's error)."""
    with tempfile.NamedTemporaryFile("r") as rss:
        r = subprocess.run([sys.executable, "-c", RSS_WRAPPER, rss.name, *cmd], capture_output=True, text=True,
                           env=env, timeout=timeout)
        if r.returncode != 0:
            lines = r.stderr.strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"exit {r.returncode}")
        return json.loads(r.stdout.strip().splitlines()[-1]), int(rss.read()) / 1024


def ours(peft_bin, model_dir, text, n_new, threads, dtype, timeout):
    cmd = [peft_bin, "generate", "--model", model_dir, "--prompt", text, "--max-new-tokens", str(n_new),
           "--greedy", "--json", "--threads", str(threads), "--base-dtype", dtype]
    r, rss = run_measured(cmd, bc.clean_env(), timeout)
    return {"prompt_tokens": r["prompt_tokens"], "new_tokens": len(r["ids"]),
            "prefill_tokens_per_s": r["prefill_tokens_per_s"], "decode_tokens_per_s": r["tokens_per_s"],
            "stopped_at_end_token": r["stopped_at_end_token"], "peak_rss_mb": rss}


def peer_torch(model_dir, ids, n_new, threads, mode):
    """transformers generate(), greedy, min_new_tokens = max_new_tokens; a logits processor notes
    the time each step's logits arrive (the first: after the prompt's forward pass)."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList, Qwen2ForCausalLM
    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    model = Qwen2ForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    stamps = []

    class Stamp(LogitsProcessor):
        def __call__(self, input_ids, scores):
            stamps.append(time.perf_counter())
            return scores

    x = torch.tensor([ids])
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n_new, min_new_tokens=n_new,
                             do_sample=False, logits_processor=LogitsProcessorList([Stamp()]), pad_token_id=0)
    new = out.shape[1] - len(ids)
    return {"prompt_tokens": len(ids), "new_tokens": new, "prefill_tokens_per_s": len(ids) / (stamps[0] - t0),
            "decode_tokens_per_s": (len(stamps) - 1) / (stamps[-1] - stamps[0])}


def peer_llama_cpp(gguf, ids, n_new, threads):
    """llama.cpp through llama-cpp-python: eval() of the prompt, then argmax and eval() of each new
    token (what its greedy sampler does, without the sampler chain's overhead)."""
    import llama_cpp
    import numpy as np
    # n_batch covers the whole sequence: llama-cpp-python keeps n_batch rows of logits and
    # indexes them by position. n_ubatch (what one graph evaluates) covers the prompt.
    n_ctx = len(ids) + n_new + 8
    llm = llama_cpp.Llama(model_path=gguf, n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx, n_batch=n_ctx,
                          n_ubatch=max(512, len(ids)), verbose=False)
    t0 = time.perf_counter()
    llm.eval(ids)
    tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    t1 = time.perf_counter()
    for _ in range(n_new - 1):
        llm.eval([tok])
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    t2 = time.perf_counter()
    return {"prompt_tokens": len(ids), "new_tokens": n_new, "prefill_tokens_per_s": len(ids) / (t1 - t0),
            "decode_tokens_per_s": (n_new - 1) / (t2 - t1), "llama_cpp": llama_cpp.__version__}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=list(bc.SHAPES), default="qwen2-0.5b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ours", default="bf16,q8_0,f32", help="our --base-dtype values")
    ap.add_argument("--peer", default="bf16,f32", help="PyTorch model dtypes: bf16, f32")
    ap.add_argument("--llama-cpp", default="bf16,q8_0,f32", help="GGUF dtypes for llama.cpp ('' to skip)")
    ap.add_argument("--peer-wait", default="PASSIVE", help="OMP_WAIT_POLICY of the PyTorch peer ('' leaves it unset)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds one run may take")
    ap.add_argument("--peft", default=bc.PEFT_BIN)
    ap.add_argument("--peer-only", nargs=3, metavar=("SIDE", "MODEL", "MODE"), help=argparse.SUPPRESS)
    ap.add_argument("--ids", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peer_only:
        side, model, mode = a.peer_only
        ids = json.loads(a.ids)
        r = (peer_torch(model, ids, a.new_tokens, a.threads, mode) if side == "torch"
             else peer_llama_cpp(model, ids, a.new_tokens, a.threads))
        print(json.dumps(r))
        return
    import torch
    import transformers
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    runs = ([("ours", m) for m in a.ours.split(",") if m] + [("torch", m) for m in a.peer.split(",") if m]
            + [("llama.cpp", m) for m in a.llama_cpp.split(",") if m])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "model")
        make_folder(model_dir, bc.SHAPES[a.config])
        ids, text = prompt_ids(model_dir, a.prompt_tokens)
        ggufs = {}
        for m in a.llama_cpp.split(","):
            if m:
                ggufs[m] = os.path.join(tmp, f"model-{m}.gguf")
                subprocess.run([a.peft, "export", "--model", model_dir, "--format", "gguf", "--dtype", m,
                                "--out", ggufs[m]], check=True, capture_output=True)
        for rep in range(a.repeats):
            for side, mode in runs:
                load = bc.load1()
                try:
                    if side == "ours":
                        r = ours(a.peft, model_dir, text, a.new_tokens, a.threads, mode, a.timeout)
                    else:
                        env = dict(os.environ)
                        if side == "torch" and a.peer_wait:
                            env["OMP_WAIT_POLICY"] = a.peer_wait
                        target = model_dir if side == "torch" else ggufs[mode]
                        r, rss = run_measured([sys.executable, __file__, "--threads", str(a.threads), "--new-tokens",
                                               str(a.new_tokens), "--ids", json.dumps(ids), "--peer-only", side,
                                               target, mode], env, a.timeout)
                        r["peak_rss_mb"] = rss
                except Exception as e:  # noqa: BLE001 (a side that cannot run here is reported)
                    print(json.dumps({"side": side, "mode": mode, "repeat": rep, "error": str(e)[:300]}), flush=True)
                    continue
                rec = {"side": side, "mode": mode, "repeat": rep, **{k: (round(v, 2) if isinstance(v, float) else v)
                                                                      for k, v in r.items()}, "load1": load}
                results.setdefault((side, mode), []).append(rec)
                print(json.dumps(rec), flush=True)
    keys = ("prefill_tokens_per_s", "decode_tokens_per_s", "peak_rss_mb")
    med = {f"{s}:{m}": {k: round(statistics.median(r[k] for r in rs), 2) for k in keys} for (s, m), rs in results.items()}
    ratios = {}
    for peer in ("torch", "llama.cpp"):
        for k in keys[:2]:
            for key, v in med.items():
                side, mode = key.split(":")
                if side == "ours" and f"{peer}:{mode}" in med:
                    ratios[f"{k}:{mode}:ours/{peer}"] = round(v[k] / med[f"{peer}:{mode}"][k], 2)
            best = {s: max((v[k] for key, v in med.items() if key.startswith(s + ":")), default=None)
                    for s in ("ours", peer)}
            if best["ours"] and best[peer]:
                ratios[f"{k}:best:ours/{peer}"] = round(best["ours"] / best[peer], 2)
    print(json.dumps({"bench": "inference_peers", "config": a.config, "threads": a.threads,
                      "prompt_tokens": len(ids), "new_tokens": a.new_tokens, "repeats": a.repeats,
                      "peer_wait": a.peer_wait, **versions, "cpu": bc.cpu_name(), "medians": med, "ratios": ratios}),
          flush=True)


if __name__ == "__main__":
    main()
