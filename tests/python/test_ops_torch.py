#!/usr/bin/env python3
"""PyTorch oracle for the ops of src/ops.

Generates seeded random inputs with torch, runs each op forward and backward (autograd, float32)
in torch and in our build (tests/tools/op_oracle, one process for all cases), and compares the
outputs and every input gradient elementwise: |ours - torch| <= TOL + TOL * |torch|.
Prints one line per case; exits 1 on any mismatch, 77 (CTest skip) only when no interpreter
with torch can be found.

Environment: PEFT_OP_ORACLE (the op_oracle binary; set by CTest), PEFT_PYTHON (optional: an
interpreter with torch to re-run under when this one lacks it).
"""
import json
import os
import subprocess
import sys
import tempfile

# Mirrors tol::kLayerVsTorch in tests/tolerances.h.
TOL = 1e-4


def _ensure_torch():
    """Re-runs this script under an interpreter that has torch (Debian's python3-torch installs it
    for /usr/bin/python3 only; a pyenv python3 first on PATH may lack it); exits 77 if none has."""
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401
        return
    except ImportError:
        pass
    for candidate in (os.environ.get("PEFT_PYTHON"), "/usr/bin/python3"):
        if not candidate or not os.path.exists(candidate):
            continue
        if os.path.realpath(candidate) == os.path.realpath(sys.executable):
            continue
        probe = subprocess.run([candidate, "-c", "import torch, numpy"], capture_output=True)
        if probe.returncode == 0:
            os.execv(candidate, [candidate] + sys.argv)
    print("SKIP: no python interpreter with torch and numpy (see tests/requirements.txt)")
    sys.exit(77)


_ensure_torch()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Case:
    """One op call: named inputs (float tensors, trainable or frozen, and i32 tensors), attrs for
    op_oracle, and the torch function computing the same output from the inputs."""

    def __init__(self, name, op, inputs, fn, attrs=None, frozen=()):
        self.name, self.op, self.fn, self.attrs = name, op, fn, attrs or {}
        self.inputs = inputs  # name -> tensor (float32 or int32)
        self.frozen = set(frozen)

    def trainable(self, key):
        t = self.inputs[key]
        return t.dtype == torch.float32 and key not in self.frozen

    def run_torch(self):
        args = {}
        for key, t in self.inputs.items():
            args[key] = t.clone().requires_grad_(self.trainable(key))
        out = self.fn(**args)
        self.grad_output = torch.randn(out.shape)
        out.backward(self.grad_output)
        self.out = out.detach()
        self.grads = {k: v.grad for k, v in args.items() if self.trainable(k)}

    def write(self, folder):
        spec = {"op": self.op, "attrs": self.attrs, "inputs": []}
        for key, t in self.inputs.items():
            dtype = "i32" if t.dtype == torch.int32 else "f32"
            spec["inputs"].append({"name": key, "shape": list(t.shape), "dtype": dtype,
                                   "requires_grad": self.trainable(key)})
            t.numpy().astype("<i4" if dtype == "i32" else "<f4").tofile(
                os.path.join(folder, key + ".bin"))
        self.grad_output.numpy().astype("<f4").tofile(os.path.join(folder, "grad_output.bin"))
        with open(os.path.join(folder, "spec.json"), "w") as f:
            json.dump(spec, f)

    def compare(self, folder):
        """Returns (ok, line)."""
        with open(os.path.join(folder, "result.json")) as f:
            shape = json.load(f)["output_shape"]
        if shape != list(self.out.shape) and not (np.prod(shape) == 1 == self.out.numel()):
            return False, f"{self.name}: output shape {shape}, torch {list(self.out.shape)}"
        pairs = [("out", "output.bin", self.out)]
        pairs += [("d" + k, "grad_" + k + ".bin", g) for k, g in self.grads.items()]
        worst, ok, parts = 0.0, True, []
        for label, file, ref in pairs:
            ref = ref.numpy().astype(np.float64).ravel()
            ours = np.fromfile(os.path.join(folder, file), dtype="<f4").astype(np.float64)
            if ours.size != ref.size:
                return False, f"{self.name}: {label} has {ours.size} values, torch {ref.size}"
            err = np.abs(ours - ref)
            bad = err > TOL + TOL * np.abs(ref)
            worst = max(worst, float(err.max(initial=0.0)))
            if bad.any():
                ok = False
                i = int(np.argmax(bad))
                parts.append(f"{label}[{i}] ours {ours[i]:.7g} torch {ref[i]:.7g}")
        status = "ok" if ok else "MISMATCH " + "; ".join(parts)
        return ok, f"{self.name:28s} max|diff| {worst:.2e}  {status}"


def rms_norm_hf(x, weight, eps):  # Qwen2RMSNorm / LlamaRMSNorm (f32 inputs)
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope_hf(x, positions, theta):  # x [B, T, H, D], HF rotate_half convention
    D = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    freqs = positions.float()[..., None] * inv_freq  # [B, T, D/2], f32 like transformers
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, :, None, :], emb.sin()[:, :, None, :]
    return x * cos + rotate_half(x) * sin


def attention_ref(q, k, v, key_mask=None, prefix_k=None, prefix_v=None, causal=True):
    """softmax(q·kᵀ/√D + mask)·v. torch 1.13 has no F.scaled_dot_product_attention; this is the
    formula its math backend computes. GQA by repeat_interleave; prefix keys and values come
    first and every query sees them."""
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    P = 0 if prefix_k is None else prefix_k.shape[1]
    if P:
        k, v = torch.cat((prefix_k, k), dim=1), torch.cat((prefix_v, v), dim=1)
    qh = q.transpose(1, 2)
    kh = k.transpose(1, 2).repeat_interleave(H // Hkv, dim=1)
    vh = v.transpose(1, 2).repeat_interleave(H // Hkv, dim=1)
    scores = qh @ kh.transpose(-1, -2) / (D ** 0.5)
    allowed = torch.ones(B, 1, Tq, P + Tk, dtype=torch.bool)
    if causal:
        i = torch.arange(Tq)[:, None] + (Tk - Tq)
        j = torch.arange(Tk)[None, :]
        allowed[..., P:] &= (j <= i)[None, None]
    if key_mask is not None:
        allowed[..., P:] &= (key_mask != 0)[:, None, None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    return (torch.softmax(scores, dim=-1) @ vh).transpose(1, 2)


def lstm_with(module, x, weights):
    """module(x)[0] with its parameters replaced by the given (autograd-tracked) tensors: the call
    nn.LSTM.forward makes (torch 1.13's functional_call does not reach an RNN's flat weights)."""
    flat = [weights[n] for n in module._flat_weights_names]
    D = 2 if module.bidirectional else 1
    h0 = torch.zeros(module.num_layers * D, x.shape[0], module.hidden_size)
    return torch._VF.lstm(x, (h0, h0), flat, module.bias, module.num_layers, 0.0, False,
                          module.bidirectional, module.batch_first)[0]


def cases():
    torch.manual_seed(1234)
    r = torch.randn
    out = []

    out.append(Case("linear", "linear", {"x": r(3, 5, 17), "weight": r(13, 17), "bias": r(13)},
                    lambda x, weight, bias: F.linear(x, weight, bias)))
    out.append(Case(
        "linear+lora (frozen W, b)", "linear",
        {"x": r(2, 7, 16), "weight": r(11, 16), "bias": r(11), "lora_A": r(4, 16),
         "lora_B": r(11, 4)},
        lambda x, weight, bias, lora_A, lora_B:
            F.linear(x, weight, bias) + 2.0 * F.linear(F.linear(x, lora_A), lora_B),
        attrs={"scale": 2.0}, frozen=("weight", "bias")))

    ids = torch.tensor([[3, 0, 36, 3, 17, 5, 5, 5, 1], [2, 2, 9, 0, 36, 11, 4, 8, 3]],
                       dtype=torch.int32)
    out.append(Case("embedding", "embedding", {"weight": r(37, 24), "ids": ids},
                    lambda weight, ids: F.embedding(ids.long(), weight)))

    out.append(Case("rms_norm", "rms_norm", {"x": 2 * r(2, 5, 67), "weight": r(67)},
                    lambda x, weight: rms_norm_hf(x, weight, 1e-6), attrs={"eps": 1e-6}))
    out.append(Case("layer_norm", "layer_norm",
                    {"x": 2 * r(3, 4, 45) + 0.5, "weight": r(45), "bias": r(45)},
                    lambda x, weight, bias: F.layer_norm(x, (45,), weight, bias, eps=1e-5),
                    attrs={"eps": 1e-5}))

    out.append(Case("swiglu", "swiglu", {"gate": 3 * r(2, 3, 29), "up": r(2, 3, 29)},
                    lambda gate, up: F.silu(gate) * up))
    for approx in ("none", "tanh"):
        out.append(Case(f"gelu ({approx})", "gelu", {"x": 3 * r(4, 37)},
                        lambda x, a=approx: F.gelu(x, approximate=a),
                        attrs={"approximate": approx}))
    for name, fn in (("silu", F.silu), ("relu", F.relu), ("tanh", torch.tanh),
                     ("sigmoid", torch.sigmoid)):
        out.append(Case(name, name, {"x": 3 * r(5, 23)}, lambda x, fn=fn: fn(x)))
    out.append(Case("softmax", "softmax", {"x": 3 * r(3, 4, 19)},
                    lambda x: torch.softmax(x, dim=-1)))

    # P-Tuning v1's prompt encoder: nn.LSTM(..., num_layers=2, bidirectional=True,
    # batch_first=True), weights copied under torch's own parameter names.
    lstm = torch.nn.LSTM(7, 5, num_layers=2, bidirectional=True, batch_first=True)
    weights = {n: p.detach().clone() for n, p in lstm.named_parameters()}
    x = r(2, 6, 7)
    with torch.no_grad():  # the functional form below is the module's own computation
        assert torch.equal(lstm(x)[0], lstm_with(lstm, x, weights))
    out.append(Case("lstm (2 layers, bidir)", "lstm", {"x": x, **weights},
                    lambda x, **w: lstm_with(lstm, x, w),
                    attrs={"num_layers": 2, "bidirectional": True}))

    positions = torch.stack([torch.arange(7), torch.arange(7) + 5]).to(torch.int32)
    out.append(Case("rope", "rope", {"x": r(2, 7, 3, 16), "positions": positions},
                    lambda x, positions: rope_hf(x, positions, 10000.0),
                    attrs={"theta": 10000.0}))

    key_mask = torch.ones(2, 7, dtype=torch.int32)
    key_mask[1, 5:] = 0  # right padding
    out.append(Case("attention (gqa, causal, pad)", "attention",
                    {"q": r(2, 7, 4, 8), "k": r(2, 7, 2, 8), "v": r(2, 7, 2, 8),
                     "key_mask": key_mask},
                    lambda q, k, v, key_mask: attention_ref(q, k, v, key_mask),
                    attrs={"causal": True}))
    out.append(Case("attention (bidir, pad)", "attention",
                    {"q": r(2, 7, 3, 5), "k": r(2, 7, 3, 5), "v": r(2, 7, 3, 5),
                     "key_mask": key_mask},
                    lambda q, k, v, key_mask: attention_ref(q, k, v, key_mask, causal=False),
                    attrs={"causal": False}))
    out.append(Case("attention (gqa, prefix kv)", "attention",
                    {"q": r(2, 5, 4, 8), "k": r(2, 5, 2, 8), "v": r(2, 5, 2, 8),
                     "prefix_k": r(2, 3, 2, 8), "prefix_v": r(2, 3, 2, 8)},
                    lambda q, k, v, prefix_k, prefix_v:
                        attention_ref(q, k, v, None, prefix_k, prefix_v),
                    attrs={"causal": True}))

    targets = torch.tensor([3, 28, -100, 0, 7, 7, -100, 15, 1, 2, 27], dtype=torch.int32)
    out.append(Case("cross_entropy (lm head)", "cross_entropy",
                    {"hidden": r(11, 16), "weight": r(29, 16), "targets": targets},
                    lambda hidden, weight, targets:
                        F.cross_entropy(hidden @ weight.t(), targets.long(), ignore_index=-100),
                    attrs={"ignore_index": -100}))
    return out




def main():
    oracle = os.environ.get("PEFT_OP_ORACLE")
    if not oracle:
        build = os.environ.get("PEFT_BUILD_DIR", "build")
        oracle = os.path.join(build, "tests", "op_oracle")
    if not os.path.exists(oracle):
        print(f"FAIL: op_oracle not found at {oracle} (build the op_oracle target)")
        return 1
    torch.set_num_threads(1)
    all_cases = cases()
    with tempfile.TemporaryDirectory(prefix="peft_ops_torch_") as tmp:
        folders = []
        for i, case in enumerate(all_cases):
            case.run_torch()
            folder = os.path.join(tmp, f"{i:02d}_{case.op}")
            os.makedirs(folder)
            case.write(folder)
            folders.append(folder)
        run = subprocess.run([oracle] + folders, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"FAIL: op_oracle exited {run.returncode}: {run.stderr.strip()}")
            return 1
        failures = 0
        for case, folder in zip(all_cases, folders):
            ok, line = case.compare(folder)
            print(line)
            failures += not ok
    print(f"{len(all_cases) - failures} of {len(all_cases)} ops match torch {torch.__version__} "
          f"within {TOL:g}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
