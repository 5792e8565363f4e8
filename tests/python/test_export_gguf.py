#!/usr/bin/env python3
"""`peft export --format gguf` read back with llama.cpp's own reader package (`gguf`, pinned in
tests/requirements.txt), on tiny random Qwen2 / Llama / Baichuan-7B models with LoRA adapters
trained by `peft train`:

1. adapter files: general.type "adapter", adapter.type "lora", adapter.lora.alpha; one
   `<llama.cpp name>.lora_a` [r, in] / `.lora_b` [out, r] pair per adapted weight, A as trained
   and B as trained with Q / K rows permuted for llama.cpp's RoPE (Llama, Baichuan) and Baichuan's
   W_pack split into Q, K and V; an rsLoRA adapter has its scale folded into B exactly;
2. model files in f32, bf16 and q8_0: every weight under its llama.cpp name, permuted / split the
   same way, values exact (f32), rounded (bf16) or within q8_0's step; metadata from config.json;
   the tokenizer's tokens and merges;
3. merged models (--merge): W + s·B·A, then permuted (1e-5).
The permutation is written here from convert_hf_to_gguf.py's description, independently of ours.
"""
import json
import os
import subprocess
import sys
import tempfile

import model_ref

model_ref.ensure_env(extra_modules=("gguf",))

import numpy as np  # noqa: E402
from gguf import GGUFReader, GGMLQuantizationType  # noqa: E402
from gguf.quants import dequantize  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def permute(w, n_head):
    """llama.cpp's converter: rows of each head go from [half 0; half 1] to interleaved pairs."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def run(args):
    r = subprocess.run([model_ref.peft_binary(), *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(args)}\n{r.stderr}")
    return r.stdout


def field(reader, key):
    f = reader.fields[key]
    return f.contents()


def values(t):
    if t.tensor_type == GGMLQuantizationType.F32:
        return np.array(t.data, dtype=np.float32).reshape(list(reversed(t.shape.tolist())))
    return dequantize(t.data, t.tensor_type).reshape(list(reversed(t.shape.tolist())))


def hf_to_gguf(cfg, permute_qk):
    """HF weight name -> [(gguf name, row slice, heads to permute over or 0)]."""
    H, Hkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    D = cfg["hidden_size"] // H
    table = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}

    def plan(name):
        if name == "model.embed_tokens.weight":
            return [("token_embd.weight", None, 0)]
        if name == "model.norm.weight":
            return [("output_norm.weight", None, 0)]
        if name == "lm_head.weight":
            return [("output.weight", None, 0)]
        parts = name.split(".")
        layer, module, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
        blk = f"blk.{layer}."
        if module == "self_attn.W_pack":
            return [(blk + f"attn_q.{kind}", slice(0, H * D), H if permute_qk else 0),
                    (blk + f"attn_k.{kind}", slice(H * D, 2 * H * D), H if permute_qk else 0),
                    (blk + f"attn_v.{kind}", slice(2 * H * D, 3 * H * D), 0)]
        heads = 0
        if permute_qk and module == "self_attn.q_proj":
            heads = H
        if permute_qk and module == "self_attn.k_proj":
            heads = Hkv
        return [(blk + f"{table[module]}.{kind}", None, heads)]
    return plan


def expected(w, rows, heads):
    w = w if rows is None else w[rows]
    return permute(w, heads) if heads else w


def make_model(tmp, arch, tokenizer):
    model = os.path.join(tmp, arch)
    args = ["init", "--arch", arch, "--preset", "tiny", "--seed", "5", "--out", model]
    if tokenizer:
        args += ["--vocab-from", os.path.join(ROOT, "data", "demo")]
    run(args)
    with open(os.path.join(model, "config.json")) as f:
        cfg = json.load(f)
    data = os.path.join(tmp, f"{arch}.jsonl")
    rng = np.random.default_rng(0)
    with open(data, "w") as f:
        for _ in range(8):
            f.write(json.dumps({"input_ids": rng.integers(1, cfg["vocab_size"], 12).tolist()}) + "\n")
    return model, cfg, data


def train_adapter(tmp, name, model, data, targets, extra=()):
    out = os.path.join(tmp, name)
    run(["train", "--model", model, "--data", data, "--out", out, "--max-steps", "3",
         "--lr", "0.05", "--r", "4", "--lora-alpha", "8", "--target-modules", targets, *extra])
    return out


def check_adapter(tmp, arch, model, cfg, adapter, permute_qk, rslora=False):
    path = os.path.join(tmp, f"{arch}-adapter.gguf")
    summary = json.loads(run(["export", "--model", model, "--adapter", adapter, "--format", "gguf",
                              "--out", path, "--json"]).splitlines()[-1])
    assert summary["kind"] == "adapter", summary
    r = GGUFReader(path)
    assert field(r, "general.type") == "adapter"
    assert field(r, "adapter.type") == "lora"
    assert field(r, "general.architecture") == arch
    alpha = field(r, "adapter.lora.alpha")
    assert alpha == 8.0, alpha
    st = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    plan = hf_to_gguf(cfg, permute_qk)
    tensors = {t.name: t for t in r.tensors}
    n = 0
    for key, A in st.items():
        if ".lora_A." not in key:
            continue
        module = key[len("base_model.model."):-len(".lora_A.weight")]
        B = st[key.replace("lora_A", "lora_B")]
        r_ = A.shape[0]
        fold = (8.0 / np.sqrt(r_)) / (alpha / r_) if rslora else 1.0
        for gname, rows, heads in plan(module + ".weight"):
            a, b = tensors[gname + ".lora_a"], tensors[gname + ".lora_b"]
            assert a.shape.tolist() == [A.shape[1], A.shape[0]], (gname, a.shape)  # ne order
            np.testing.assert_array_equal(values(a), A)
            np.testing.assert_allclose(values(b), fold * expected(B, rows, heads), rtol=1e-6,
                                       atol=1e-7)
            n += 2
    assert n == len(r.tensors) and n > 0, (n, len(r.tensors))
    print(f"ok: {arch} adapter: {n // 2} lora_a / lora_b pairs"
          f"{' (rsLoRA folded)' if rslora else ''}")


def check_model(tmp, arch, model, cfg, permute_qk, dtype, tokenizer, adapter=None):
    path = os.path.join(tmp, f"{arch}-{dtype}{'-merged' if adapter else ''}.gguf")
    args = ["export", "--model", model, "--format", "gguf", "--out", path, "--dtype", dtype]
    if adapter:
        args += ["--adapter", adapter, "--merge"]
    run(args)
    r = GGUFReader(path)
    assert field(r, "general.architecture") == arch
    assert field(r, f"{arch}.block_count") == cfg["num_hidden_layers"]
    assert field(r, f"{arch}.embedding_length") == cfg["hidden_size"]
    assert field(r, f"{arch}.attention.head_count_kv") == cfg.get(
        "num_key_value_heads", cfg["num_attention_heads"])
    if tokenizer:
        assert field(r, "tokenizer.ggml.model") == "gpt2"
        tokens = field(r, "tokenizer.ggml.tokens")
        assert len(tokens) == cfg["vocab_size"], len(tokens)
        with open(os.path.join(model, "tokenizer.json")) as f:
            tj = json.load(f)
        for tok, i in list(tj["model"]["vocab"].items())[:50]:
            assert tokens[i] == tok, (i, tokens[i], tok)
        assert len(field(r, "tokenizer.ggml.merges")) == len(tj["model"]["merges"])
    else:
        assert field(r, "tokenizer.ggml.model") == "no_vocab"
    weights = load_file(os.path.join(model, "model.safetensors"))
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    if adapter:
        st = load_file(os.path.join(adapter, "adapter_model.safetensors"))
        for key, A in st.items():
            if ".lora_A." in key:
                name = key[len("base_model.model."):-len(".lora_A.weight")] + ".weight"
                weights[name] = weights[name] + (8.0 / 4) * st[key.replace("lora_A", "lora_B")] @ A
    plan = hf_to_gguf(cfg, permute_qk)
    tensors = {t.name: t for t in r.tensors}
    count = 0
    for name, w in weights.items():
        for gname, rows, heads in plan(name):
            t = tensors[gname]
            want = expected(w, rows, heads)
            got = values(t)
            assert got.shape == want.shape, (gname, got.shape, want.shape)
            if w.ndim == 1 or dtype == "f32":
                assert t.tensor_type == GGMLQuantizationType.F32
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 if adapter else 0)
            elif dtype == "bf16":
                assert t.tensor_type == GGMLQuantizationType.BF16
                np.testing.assert_allclose(got, want, rtol=2 ** -8, atol=1e-30)
            else:
                assert t.tensor_type == GGMLQuantizationType.Q8_0, (gname, t.tensor_type)
                step = np.abs(want.reshape(-1, 32)).max(axis=1, keepdims=True) / 127
                # half a step, plus the f16 rounding of the scale d (relative 2^-11) times 127
                tol = step * 0.5 + step * 127 * 2.0 ** -11 + 1e-7
                assert (np.abs(got - want).reshape(-1, 32) <= tol).all(), gname
            count += 1
    assert count == len(r.tensors), (count, len(r.tensors))
    print(f"ok: {arch} model {dtype}{' merged' if adapter else ''}: {count} tensors")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        # Qwen2: NEOX RoPE, no permutation; q/k/v biases; the demo's byte-level BPE tokenizer.
        model, cfg, data = make_model(tmp, "qwen2", tokenizer=True)
        a = train_adapter(tmp, "qwen2-lora", model, data, "q_proj,k_proj,v_proj,o_proj,down_proj")
        check_adapter(tmp, "qwen2", model, cfg, a, permute_qk=False)
        for dtype in ("f32", "bf16", "q8_0"):
            check_model(tmp, "qwen2", model, cfg, False, dtype, tokenizer=True)
        check_model(tmp, "qwen2", model, cfg, False, "f32", tokenizer=True, adapter=a)
        # Llama: Q / K rows permuted (GQA: K over the key/value heads); rsLoRA folded into B.
        model, cfg, data = make_model(tmp, "llama", tokenizer=False)
        a = train_adapter(tmp, "llama-lora", model, data, "q_proj,k_proj,v_proj")
        check_adapter(tmp, "llama", model, cfg, a, permute_qk=True)
        check_model(tmp, "llama", model, cfg, True, "f32", tokenizer=False)
        check_model(tmp, "llama", model, cfg, True, "f32", tokenizer=False, adapter=a)
        a = train_adapter(tmp, "llama-rslora", model, data, "q_proj,k_proj", ["--use-rslora"])
        check_adapter(tmp, "llama", model, cfg, a, permute_qk=True, rslora=True)
        # Baichuan-7B: W_pack split into Q, K, V, then Q and K permuted; its LoRA B likewise.
        model, cfg, data = make_model(tmp, "baichuan", tokenizer=False)
        a = train_adapter(tmp, "baichuan-lora", model, data, "W_pack,o_proj")
        check_adapter(tmp, "baichuan", model, cfg, a, permute_qk=True)
        check_model(tmp, "baichuan", model, cfg, True, "bf16", tokenizer=False)
        check_model(tmp, "baichuan", model, cfg, True, "f32", tokenizer=False, adapter=a)
        # What llama.cpp adapters cannot hold is refused with one line.
        bad = subprocess.run([model_ref.peft_binary(), *["export", "--model", model, "--adapter", a, "--format",
                                       "gguf", "--out", os.path.join(tmp, "x.gguf"),
                                       "--dtype", "q8_0"]], capture_output=True, text=True)
        assert bad.returncode == 1 and bad.stderr.startswith("peft: error: "), bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    print("PASS")


if __name__ == "__main__":
    main()
