#!/usr/bin/env python3
"""Bottleneck adapters against AdapterHub (`adapters` 1.3.0, pinned in tests/requirements-adapters.txt,
installed by scripts/setup-adapters-python.sh into build/.venv-adapters: it needs transformers 4.57
and torch >= 2.2, which the Debian-based reference environment cannot hold).

On tiny random BERT (post-LN), Llama (AdapterHub's native model) and Qwen2 (AdapterHub's plugin
interface), for Houlsby (double_seq_bn) and Pfeiffer (seq_bn) with several reduction factors and
non-linearities:
1. an adapter AdapterHub saves (pytorch_adapter.bin, its default) loads here with the same logits
   (max |ours − theirs| / max |theirs| ≤ 1e-5) and the same gradients of the loss (1e-4 relative);
2. an adapter `peft train` writes loads in AdapterHub (load_adapter, from pytorch_adapter.bin and
   from adapter.safetensors) with the same logits (1e-5 relative);
3. the mam_adapter init (zero up-projection) leaves the logits exactly unchanged;
4. 5 AdamW steps from the same AdapterHub adapter follow PyTorch's losses (1e-5 relative);
5. a pytorch_adapter.bin whose pickle names os.system is refused with one error line, running
   nothing.
"""
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def ensure_adapters_env():
    """Re-runs this script under the AdapterHub venv (scripts/setup-adapters-python.sh: in the user's
    cache, created on first use); exit 77 (skip) when it cannot be had (no network)."""
    try:
        import adapters  # noqa: F401
        import torch  # noqa: F401
        return
    except ImportError:
        pass
    req = os.path.join(ROOT, "tests", "requirements-adapters.txt")
    with open(req, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    cache = os.environ.get("PEFT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "peft.cpp")
    venv = os.path.join(cache, "venv-adapters-" + digest)
    python = os.path.join(venv, "bin", "python")
    os.makedirs(cache, exist_ok=True)
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        setup = subprocess.run([os.path.join(ROOT, "scripts", "setup-adapters-python.sh"), venv])
    probe = subprocess.run([python, "-c", "import adapters, torch, safetensors, numpy"],
                           capture_output=True) if os.path.exists(python) else None
    if setup.returncode != 0 or probe is None or probe.returncode != 0:
        print("SKIP: could not set up the AdapterHub environment (scripts/setup-adapters-python.sh)")
        sys.exit(77)
    os.execv(python, [python] + sys.argv)


ensure_adapters_env()

import adapters  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from adapters import DoubleSeqBnConfig, SeqBnConfig  # noqa: E402
from transformers import (BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM,  # noqa: E402
                          Qwen2Config, Qwen2ForCausalLM)

sys.path.insert(0, HERE)
import model_ref  # noqa: E402
from model_ref import peft_cmd  # noqa: E402

LOGITS_REL = 1e-5
GRAD_REL = 1e-4
STEP_LOSS_REL = 1e-5
VOCAB = 97
KINDS = {"houlsby": DoubleSeqBnConfig, "pfeiffer": SeqBnConfig}


def build(family, path):
    torch.manual_seed(0)
    if family == "bert":
        cfg = BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=96, max_position_embeddings=64, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
        m = BertForMaskedLM(cfg)
    elif family == "llama":
        cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        m = LlamaForCausalLM(cfg)
    else:
        cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                          tie_word_embeddings=False)
        m = Qwen2ForCausalLM(cfg)
    with torch.no_grad():  # larger than the init so that every part of the model matters
        for name, p in m.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.1)
            elif "norm" in name.lower() and name.endswith("weight"):
                p.uniform_(0.8, 1.2)
            else:
                p.normal_(0, 0.05)
    m.save_pretrained(path, safe_serialization=True)
    return m


def fresh(family, path):
    cls = {"bert": BertForMaskedLM, "llama": LlamaForCausalLM, "qwen2": Qwen2ForCausalLM}[family]
    m = cls.from_pretrained(path, attn_implementation="eager")
    adapters.init(m)
    return m.eval()


def batch_for(seed):
    ids, mask, labels = model_ref.padded_batch(VOCAB, [9, 13, 6, 11], seed)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def rel(a, b, mask):
    m = mask.numpy().astype(bool)
    return float(np.abs(a[m] - b[m]).max() / np.abs(b[m]).max())


def ours(model_dir, b, adapter, grads=False):
    inputs = {k: b[k] for k in ("input_ids", "attention_mask", "labels")}
    extra = ["--adapter", adapter] if adapter else []
    return model_ref.run_oracle(model_dir, inputs, grads=grads, extra_args=extra)


def adapter_params(m):
    return {n: p for n, p in m.named_parameters() if ".adapters." in n}


def hub_adapter(family, base_dir, kind, rf, act, out, init="bert", randomize=True):
    m = fresh(family, base_dir)
    m.add_adapter("a", config=KINDS[kind](reduction_factor=rf, non_linearity=act, init_weights=init))
    m.set_active_adapters("a")
    if randomize:
        with torch.no_grad():
            for p in adapter_params(m).values():
                p.normal_(0, 0.3)
    m.save_adapter(out, "a")
    return m


def main():
    report = model_ref.Report()
    with tempfile.TemporaryDirectory() as tmp:
        for family in ("bert", "llama", "qwen2"):
            base_dir = os.path.join(tmp, family)
            base = build(family, base_dir).eval()
            b = batch_for(3)
            hb = b
            mask = b["attention_mask"]
            data = os.path.join(tmp, family + ".jsonl")
            with open(data, "w") as f:
                for ids, m_, lab in zip(b["input_ids"], b["attention_mask"], b["labels"]):
                    n = int(m_.sum())
                    f.write(json.dumps({"input_ids": ids[:n].tolist(), "labels": lab[:n].tolist()}) + "\n")
            with torch.no_grad():
                plain = base(**hb).logits.numpy()
            for kind, rf, act in (("houlsby", 16, "swish"), ("houlsby", 8, "gelu"), ("pfeiffer", 16, "relu"),
                                  ("pfeiffer", 4, "tanh")):
                tag = f"{family} {kind} rf={rf} {act}"
                # 1. AdapterHub -> ours (their default file, pytorch_adapter.bin).
                hub_dir = os.path.join(tmp, f"hub_{family}_{kind}_{rf}")
                m = hub_adapter(family, base_dir, kind, rf, act, hub_dir)
                out = m(**hb)
                ref = out.logits.detach().numpy()
                out.loss.backward()
                mine = ours(base_dir, b, hub_dir, grads=True)
                report.check(f"{tag}: AdapterHub's adapter, our logits", rel(mine["logits"], ref, mask), LOGITS_REL,
                             "logits rel error")
                worst = 0.0
                for name, p in adapter_params(m).items():
                    g = mine.get("grad." + name)
                    worst = max(worst, float("inf") if g is None else
                                float(np.abs(g - p.grad.numpy()).max() / max(np.abs(p.grad.numpy()).max(), 1e-12)))
                report.check(f"{tag}: gradients of every adapter weight", worst, GRAD_REL, "grad rel error")
                report.check(f"{tag}: the adapter changes the logits", -rel(ref, plain, mask), -1e-3,
                             "minus rel change")

                # 2. ours -> AdapterHub, both weight files.
                our_dir = os.path.join(tmp, f"ours_{family}_{kind}_{rf}")
                peft_cmd("train", "--model", base_dir, "--data", data, "--out", our_dir, "--method", "adapter",
                         "--adapter-kind", kind, "--reduction-factor", rf, "--non-linearity", act,
                         "--adapter-name", "mine", "--max-steps", 2, "--lr", 5e-2, "--batch-size", 4)
                ours_logits = ours(base_dir, b, our_dir)["logits"]
                for safe in (False, True):
                    h = fresh(family, base_dir)
                    name = h.load_adapter(our_dir, use_safetensors=safe)
                    h.set_active_adapters(name)
                    with torch.no_grad():
                        theirs = h(**hb).logits.numpy()
                    what = "adapter.safetensors" if safe else "pytorch_adapter.bin"
                    report.check(f"{tag}: our adapter in AdapterHub ({what})", rel(ours_logits, theirs, mask),
                                 LOGITS_REL, "logits rel error")
                report.check(f"{tag}: our trained adapter changes the logits", -rel(ours_logits, plain, mask),
                             -1e-4, "minus rel change")

            # 3. identity init.
            ident = os.path.join(tmp, f"ident_{family}")
            hub_adapter(family, base_dir, "pfeiffer", 8, "relu", ident, init="mam_adapter", randomize=False)
            with_adapter = ours(base_dir, b, ident)["logits"]
            without = ours(base_dir, b, None)["logits"]
            report.check(f"{family}: mam_adapter init leaves the logits unchanged",
                         float(np.abs(with_adapter - without).max()), 0.0, "max abs change")

            # 4. 5 AdamW steps from the same AdapterHub adapter.
            for kind in ("houlsby", "pfeiffer"):
                start = os.path.join(tmp, f"start_{family}_{kind}")
                m = hub_adapter(family, base_dir, kind, 8, "relu" if kind == "pfeiffer" else "swish", start)
                for p in m.parameters():
                    p.requires_grad_(False)
                params = list(adapter_params(m).values())
                for p in params:
                    p.requires_grad_(True)
                opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
                ref_losses = []
                for _ in range(5):
                    opt.zero_grad()
                    loss = m(**hb).loss
                    loss.backward()
                    opt.step()
                    ref_losses.append(float(loss))
                steps = os.path.join(tmp, f"steps_{family}_{kind}")
                peft_cmd("train", "--model", base_dir, "--data", data, "--out", steps, "--adapter", start,
                         "--max-steps", 5, "--batch-size", 4, "--no-shuffle", "--lr", 1e-2, "--scheduler",
                         "constant", "--clip-grad", 0, "--weight-decay", 0.01)
                with open(os.path.join(steps, "metrics.jsonl")) as f:
                    got = [json.loads(line)["loss"] for line in f if "loss" in json.loads(line)]
                worst = max(abs(a - r) / abs(r) for a, r in zip(got, ref_losses)) if len(got) == 5 else float("inf")
                report.check(f"{family} {kind}: 5 AdamW steps (torch {ref_losses[0]:.4f} -> {ref_losses[-1]:.4f})",
                             worst, STEP_LOSS_REL, "step loss rel error")

        # 5. a hostile pickle.
        evil = os.path.join(tmp, "evil")
        os.makedirs(evil)
        marker = os.path.join(tmp, "pwned")

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        good = os.path.join(tmp, "hub_llama_pfeiffer_16")
        with open(os.path.join(good, "adapter_config.json")) as f:
            cfg = f.read()
        with open(os.path.join(evil, "adapter_config.json"), "w") as f:
            f.write(cfg)
        torch.save({"x": Evil()}, os.path.join(evil, "pytorch_adapter.bin"))
        with zipfile.ZipFile(os.path.join(evil, "pytorch_adapter.bin")) as z:
            assert any(n.endswith("data.pkl") for n in z.namelist())
        inputs = os.path.join(tmp, "evil_inputs.safetensors")
        from safetensors.numpy import save_file
        save_file({"input_ids": np.asarray([[1, 2, 3]], dtype=np.int32)}, inputs)
        r = subprocess.run([model_ref.peft_binary(), "model-oracle", "--model", os.path.join(tmp, "llama"),
                            "--inputs", inputs, "--out", os.path.join(tmp, "evil_out.safetensors"),
                            "--adapter", evil], capture_output=True, text=True)
        lines = r.stderr.strip().splitlines()
        ok = r.returncode == 1 and len(lines) == 1 and "refusing" in lines[0] and "os" in lines[0] \
            and not os.path.exists(marker)
        print(f"  hostile pickle: rc={r.returncode} stderr={r.stderr.strip()!r}")
        report.check("hostile pickle refused, nothing run", 0.0 if ok else 1.0, 0.0, "failure")
    report.finish()


if __name__ == "__main__":
    sys.exit(main())
