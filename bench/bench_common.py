"""What the LoRA benchmarks share: the Qwen2-architecture shapes, the random model folder and token
data both sides read, `peft train` run and timed from its metrics.jsonl, the transformers + PEFT
peer's training loop, and the process facts each JSON line carries (peak RSS, CPU, load).

torch and transformers are imported inside the functions that need them, so a script can import
this module before it has chosen (or re-executed into) its interpreter."""
import json
import os
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEFT_BIN = os.path.join(ROOT, "build", "peft")

SHAPES = {  # as ../shared/bench/torch_lora_qwen2.py
    "tiny": dict(hidden=256, layers=4, heads=4, kv_heads=2, inter=688, vocab=8192, seq=256, batch=4),
    "medium": dict(hidden=512, layers=8, heads=8, kv_heads=2, inter=1408, vocab=32000, seq=256, batch=4),
    "qwen2-0.5b": dict(hidden=896, layers=24, heads=14, kv_heads=2, inter=4864, vocab=151936, seq=512, batch=1),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_model(path, c, dtype=None):
    """A random Qwen2ForCausalLM of shape `c` (tied embeddings), saved as safetensors."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["inter"],
                      num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
                      num_key_value_heads=c["kv_heads"], max_position_embeddings=4096,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(path, safe_serialization=True)


def write_token_data(path, c, rows, seed=2):
    """`rows` lines of {"input_ids": [...]} with c["seq"] random ids each."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with open(path, "w") as f:
        for _ in range(rows):
            f.write(json.dumps({"input_ids": torch.randint(0, c["vocab"], (c["seq"],), generator=g).tolist()}) + "\n")


def read_token_rows(path):
    with open(path) as f:
        return [json.loads(line)["input_ids"] for line in f]


def make_inputs(tmp, c, steps):
    """The random model folder and the token data (c["batch"] rows a step, steps + 1 steps) of one
    invocation, written under `tmp` once for every side; returns (model_dir, data)."""
    model_dir = os.path.join(tmp, "model")
    make_model(model_dir, c)
    data = os.path.join(tmp, "data.jsonl")
    write_token_data(data, c, c["batch"] * (steps + 1))
    return model_dir, data


def runs_of(ours, peer):
    """[("ours", v), ..., ("peer", v), ...] from the comma-separated --ours and --peer lists."""
    return [("ours", v) for v in ours.split(",") if v] + [("peer", v) for v in peer.split(",") if v]


def run_json(cmd, env=None):
    """Runs a helper process (a peer in its own interpreter) and returns its last stdout line as
    JSON; a failure raises RuntimeError with its last error line, for the caller to report."""
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed")
    return json.loads(r.stdout.strip().splitlines()[-1])


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


def load1():
    return round(os.getloadavg()[0], 2)


def clean_env(extra=None):
    """The environment without OpenMP / GEMM overrides (so each run sets exactly what it means to),
    plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "PEFT_GEMM", "KMP_"))}
    env.update(extra or {})
    return env


def ours_train(peft_bin, model_dir, data, out, c, steps, threads, base_dtype="f32", env=None):
    """`peft train` LoRA (r 8, alpha 16, all seven projections) for steps + 1 steps; the step times
    after the first (warm-up) step, from metrics.jsonl's cumulative tokens_per_s, and peak RSS."""
    cmd = [peft_bin, "train", "--model", model_dir, "--data", data, "--out", out, "--overwrite",
           "--max-steps", str(steps + 1), "--batch-size", str(c["batch"]), "--max-len", str(c["seq"]),
           "--r", "8", "--lora-alpha", "16", "--target-modules", ",".join(TARGETS),
           "--threads", str(threads), "--lr", "1e-4", "--json"]
    if base_dtype and base_dtype != "f32":
        cmd += ["--base-dtype", base_dtype]
    r = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rates = [json.loads(line)["tokens_per_s"] for line in f]  # cumulative since the start
    elapsed = [(k + 1) * c["batch"] * c["seq"] / r for k, r in enumerate(rates)]
    step_s = [b - a for a, b in zip(elapsed, elapsed[1:])]
    return step_s, json.loads(r.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def peer_train(model_dir, rows, c, steps, threads, mode="f32", attn_implementation=None):
    """transformers + PEFT (same LoRA): forward, backward, AdamW on the LoRA parameters; the wall
    time of each step after a warm-up step. mode: f32, autocast (bf16 autocast), bf16 (bf16
    weights), ipex (bf16 + ipex.optimize). `rows`: token id lists, c["batch"] per step (cycled)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2ForCausalLM
    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if mode in ("bf16", "ipex") else torch.float32
    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = Qwen2ForCausalLM.from_pretrained(model_dir, dtype=dtype, **kw)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, lora_dropout=0.0))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if mode == "ipex":
        import intel_extension_for_pytorch as ipex
        model, opt = ipex.optimize(model, optimizer=opt, dtype=torch.bfloat16)
    times = []
    b = c["batch"]
    for i in range(steps + 1):
        start = (i * b) % max(1, len(rows) - b + 1)
        ids = torch.tensor(rows[start:start + b])
        t0 = time.perf_counter()
        opt.zero_grad()
        if mode == "autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss
        else:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - t0)
    return times
