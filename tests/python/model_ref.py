"""Shared helpers of the model reference tests (tests/python/test_models_*.py).

Each test builds tiny random checkpoints with transformers (or, for Baichuan, with our PyTorch port
in baichuan_ref.py), runs the same padded batch through PyTorch (float32, eval mode) and through
our build (`peft model-oracle`, the full fine-tuning path: every weight trainable), and compares
logits, the loss and the gradient of the loss with respect to every weight.

Environment: PEFT_BINARY (the peft program; set by CTest), PEFT_BUILD_DIR (where the Python
environment is created), PEFT_PYTHON (optional: an interpreter that already has the packages).
"""
import fcntl
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Tolerances (tests/tolerances.h: kLayerVsTorch and the model x method row of STYLE.md).
LOGITS_ABS = 1e-4  # max |ours - torch| over real (unpadded) positions
LOSS_REL = 1e-5  # |ours - torch| / |torch|
GRAD_REL = 1e-4  # per weight: max |ours - torch| / max |torch|


def _has_packages(python, extra_modules=()):
    modules = ", ".join(("torch", "numpy", "transformers", "safetensors") + tuple(extra_modules))
    probe = subprocess.run([python, "-c", f"import {modules}"], capture_output=True)
    return probe.returncode == 0


def ensure_env(extra_modules=()):
    """Re-runs the calling script under an interpreter with torch, numpy, transformers and
    safetensors: this one, PEFT_PYTHON, or build/.venv, which it creates with
    scripts/setup-python.sh (pinned tests/requirements.txt) when missing. Exits 77 (CTest skip)
    only when no such interpreter can be had (no Debian torch, or PyPI unreachable)."""
    try:
        import numpy  # noqa: F401
        import safetensors  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
        for m in extra_modules:
            __import__(m)
        return
    except ImportError:
        pass
    build = os.environ.get("PEFT_BUILD_DIR", os.path.join(ROOT, "build"))
    venv_python = os.path.join(build, ".venv", "bin", "python")
    candidates = [os.environ.get("PEFT_PYTHON"), venv_python]
    for c in candidates:
        if c and os.path.exists(c) and os.path.abspath(c) != os.path.abspath(sys.executable) \
                and _has_packages(c, extra_modules):
            os.execv(c, [c] + sys.argv)
    if not os.path.exists("/usr/bin/python3"):
        print("SKIP: no /usr/bin/python3 (Debian's python3-torch) to build the environment on")
        sys.exit(77)
    os.makedirs(build, exist_ok=True)
    with open(os.path.join(build, ".venv.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel ctest runs set it up once
        setup = subprocess.run([os.path.join(ROOT, "scripts", "setup-python.sh"), build])
    if setup.returncode != 0 or not _has_packages(venv_python, extra_modules):
        print("SKIP: could not set up the reference environment (scripts/setup-python.sh)")
        sys.exit(77)
    os.execv(venv_python, [venv_python] + sys.argv)


def peft_binary():
    b = os.environ.get("PEFT_BINARY")
    if not b:
        b = os.path.join(os.environ.get("PEFT_BUILD_DIR", os.path.join(ROOT, "build")), "peft")
    return b


class Report:
    """Collects checks; prints one line each and a closing 'N passed, N failed' line."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.worst = {}

    def check(self, name, value, bound, what):
        ok = value <= bound
        self.passed += ok
        self.failed += not ok
        self.worst[what] = max(self.worst.get(what, 0.0), value)
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {what} {value:.3g} (bound {bound:g})")
        return ok

    def finish(self):
        for what, v in sorted(self.worst.items()):
            print(f"worst {what}: {v:.3g}")
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def peft_cmd(*args):
    """Runs `peft ARGS...` (str() of each); returns stdout, raises with stderr on failure."""
    cmd = [peft_binary(), *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def saved_peft_adapter(model, config, seed, out_dir):
    """PEFT's get_peft_model(model, config) with every LoRA B, and every bias the config trains,
    moved by N(0, 0.3²) noise (so the adapter changes the output), saved to out_dir. Returns the
    PeftModel in eval mode."""
    import torch
    from peft import get_peft_model
    pm = get_peft_model(model, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n or (p.requires_grad and n.endswith("bias")):
                p.add_(torch.randn_like(p) * 0.3)
    pm.save_pretrained(out_dir)
    return pm.eval()


def max_masked_diff(a, b, mask):
    """max |a - b| over the positions where mask (a torch [B, T] tensor) is set."""
    import numpy as np
    return float(np.abs(a - b)[mask.bool().numpy()].max())


def scale_init(model, seed, std_matrix=None):
    """Re-initialises a model so activations are O(1) and every weight matters: matrices
    N(0, 1/in), embeddings N(0, 1), norm weights 1 + N(0, 0.2), biases N(0, 0.2). The HF default
    (0.02) makes logits so small that a wrong rotary or mask would hide under 1e-4."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                emb = "embed" in name or "embeddings" in name
                std = 1.0 if emb else (std_matrix or 1.0 / p.shape[1] ** 0.5)
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            else:
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.2)


def padded_batch(vocab, lengths, seed, ignore_some=True):
    """input_ids, attention_mask, labels (-100 at padding and at a few real positions)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    B, T = len(lengths), max(lengths)
    ids = torch.randint(0, vocab, (B, T), generator=g)
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    ids = ids * mask  # padding id 0
    labels = ids.clone()
    labels[mask == 0] = -100
    if ignore_some:
        labels[0, 2] = -100
        labels[-1, 1] = -100
    return ids, mask, labels


def run_oracle(model_dir, inputs, grads=True, base_dtype=None, extra_args=()):
    """Runs `peft model-oracle` on a dict of int tensors; returns its outputs as numpy arrays."""
    import numpy as np
    from safetensors.numpy import load_file, save_file
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "inputs.safetensors")
        out = os.path.join(tmp, "out.safetensors")
        save_file({k: np.ascontiguousarray(v.numpy().astype(np.int32)) for k, v in inputs.items()},
                  src)
        cmd = [peft_binary(), "model-oracle", "--model", model_dir, "--inputs", src, "--out", out]
        if grads:
            cmd.append("--grads")
        if base_dtype:
            cmd += ["--base-dtype", base_dtype]
        cmd += list(extra_args)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}")
        return load_file(out)


def torch_reference(model, inputs, loss_fn=None):
    """logits, loss and {name: grad} of a float32 PyTorch model (eval mode, autograd)."""
    model.zero_grad(set_to_none=True)
    out = model(**inputs)
    loss = out.loss if loss_fn is None else loss_fn(out)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), loss.detach(), grads


def compare(report, name, model, inputs, ours, check_grads=True, logits_abs=LOGITS_ABS,
            loss_rel=LOSS_REL, grad_rel=GRAD_REL):
    """Compares our oracle outputs against the PyTorch model on the same inputs."""
    import numpy as np
    logits, loss, grads = torch_reference(model, inputs)
    real = inputs["attention_mask"].bool().numpy() if "attention_mask" in inputs else None
    ours_logits = ours["logits"]
    ref_logits = logits.numpy()
    assert ours_logits.shape == ref_logits.shape, (ours_logits.shape, ref_logits.shape)
    diff = np.abs(ours_logits - ref_logits)
    if real is not None:
        diff = diff[real]
    report.check(name, float(diff.max()), logits_abs, "logits max abs error")
    rel = abs(float(ours["loss"][0]) - float(loss)) / abs(float(loss))
    report.check(name, rel, loss_rel, "loss rel error")
    if not check_grads:
        return
    names = set(grads)
    ours_names = {k[len("grad."):] for k in ours if k.startswith("grad.")}
    if names != ours_names:
        print(f"FAIL {name}: gradient names differ: only torch {sorted(names - ours_names)}, "
              f"only ours {sorted(ours_names - names)}")
        report.failed += 1
        return
    # Relative to the tensor's largest gradient, floored at 1e-3 of the largest of all: some
    # gradients are zero in exact arithmetic (BERT's key bias: softmax ignores a per-query shift)
    # and hold only rounding noise on both sides.
    floor = 1e-3 * max(float(g.abs().max()) for g in grads.values())
    worst, worst_name = 0.0, ""
    for n, g in grads.items():
        ref = g.numpy()
        err = float(np.abs(ours["grad." + n] - ref).max()) / max(float(np.abs(ref).max()), floor)
        if err > worst:
            worst, worst_name = err, n
    report.check(f"{name} ({len(grads)} weights, worst {worst_name})", worst, grad_rel,
                 "grad rel error")


def write_config(path, cfg):
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def eval_cli(model_dir, ids, mask, labels, batch_size):
    """`peft eval --json` on the unpadded records of a padded batch."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for b in range(ids.shape[0]):
            n = int(mask[b].sum())
            f.write(json.dumps({"input_ids": ids[b, :n].tolist(), "labels": labels[b, :n].tolist()})
                    + "\n")
        path = f.name
    r = subprocess.run([peft_binary(), "eval", "--model", model_dir, "--data", path,
                        "--batch-size", str(batch_size), "--json"], capture_output=True, text=True)
    os.unlink(path)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def check_decoder(report, name, model, model_dir, seed):
    """Oracle vs torch on a padded batch, then `peft eval` (batch sizes 1 and 2) against the
    token-weighted next-token NLL computed from the torch logits."""
    import torch
    ids, mask, labels = padded_batch(model.config.vocab_size, [13, 9, 5], seed=seed)
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    compare(report, name, model, inputs, run_oracle(model_dir, inputs))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    lp = torch.log_softmax(logits[:, :-1].double(), -1)
    tgt = labels[:, 1:]
    keep = tgt != -100
    ref = float((-lp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1))[keep].mean())
    for bs in (1, 2):
        got = eval_cli(model_dir, ids, mask, labels, bs)
        report.check(f"{name} eval --batch-size {bs}", abs(got["loss"] - ref) / ref, LOSS_REL,
                     "eval loss rel error")
        if got["tokens"] != int(keep.sum()):
            report.check(f"{name} eval tokens {got['tokens']} vs {int(keep.sum())}", 1, 0,
                         "eval token count mismatch")
