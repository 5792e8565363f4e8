"""The prompt-learning family against Hugging Face PEFT (pinned): what tests/python/test_peft_prompt*.py
share. A Family says how to build a tiny base model of one architecture, wrap it with PEFT and run
it; check_method then checks one method on it, both ways:

1. PEFT -> ours: the folder PEFT writes loads here with the same logits (1e-5 relative to the
   largest logit over real positions) and the same loss;
2. one-step gradients of the trainable parameters (the prompt table, or the encoder's weights,
   handed to us in our prompt_encoder.safetensors) within 1e-4 of PEFT's;
3. ours -> PEFT: `peft train` lowers the loss, and its folder loads in PeftModel with our logits.
"""
import json
import os

import model_ref
from model_ref import peft_cmd

import numpy as np
import torch
from peft import (PeftModel, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig,
                  get_peft_model)
from safetensors.torch import save_file

LOGITS_REL = 1e-5  # max |ours - PEFT| / max |PEFT| over real positions
LOSS_REL = 1e-5
GRAD_REL = 1e-4
P = 5

# name -> (PEFT config kwargs beyond task_type / num_virtual_tokens, our `peft train` flags).
# "prefix" without projection is what `--method ptuning-v2` trains (P-Tuning v2 = PEFT's
# PREFIX_TUNING without projection).
METHODS = {
    "prompt": (PromptTuningConfig, {}, ["--method", "prompt"]),
    "ptuning-mlp": (PromptEncoderConfig, dict(encoder_hidden_size=24),
                    ["--method", "ptuning", "--encoder-hidden-size", 24]),
    "ptuning-lstm": (PromptEncoderConfig, dict(encoder_hidden_size=12, encoder_reparameterization_type="LSTM"),
                     ["--method", "ptuning", "--encoder-hidden-size", 12,
                      "--encoder-reparameterization-type", "LSTM"]),
    "prefix": (PrefixTuningConfig, {}, ["--method", "ptuning-v2"]),
    "prefix-projection": (PrefixTuningConfig, dict(prefix_projection=True, encoder_hidden_size=24),
                          ["--method", "prefix", "--prefix-projection", "--encoder-hidden-size", 24]),
}


class Family:
    """A causal LM from transformers (Qwen2, Llama): PeftModelForCausalLM, PEFT's own loss."""
    task_type = "CAUSAL_LM"
    vocab = 97

    def __init__(self, kind, config_cls, model_cls):
        self.kind, self.config_cls, self.model_cls = kind, config_cls, model_cls

    def make(self, path):
        common = dict(vocab_size=self.vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False, rms_norm_eps=1e-6)
        torch.manual_seed(0)
        m = self.model_cls(self.config_cls(**common))
        model_ref.scale_init(m, 0)
        m.save_pretrained(path, safe_serialization=True)

    def load(self, path):
        return self.model_cls.from_pretrained(path).eval()

    def wrap(self, base, config):
        return get_peft_model(base, config)

    def load_peft(self, base, folder):
        return PeftModel.from_pretrained(base, folder).eval()

    def batch(self, seed):
        ids, mask, labels = model_ref.padded_batch(self.vocab, [9, 6, 11], seed=seed)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def run(self, pm, batch, virtual):
        """logits (all positions PEFT returns) and the loss, as torch tensors."""
        out = pm(**batch)
        return out.logits, out.loss


def peft_config(name, task_type):
    cls, extra, _ = METHODS[name]
    return cls(task_type=task_type, num_virtual_tokens=P, **extra)


def real_mask(batch, virtual):
    m = batch["attention_mask"].bool().numpy()
    if virtual:
        m = np.concatenate([np.ones((m.shape[0], P), bool), m], axis=1)
    return m


def rel_logits(ours, ref, mask):
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref)[mask].max() / np.abs(ref[mask]).max())


def write_data(path, batch):
    """The batch's records as {"input_ids", "labels"[, "token_type_ids"]} JSONL, unpadded."""
    with open(path, "w") as f:
        for b in range(batch["input_ids"].shape[0]):
            n = int(batch["attention_mask"][b].sum())
            rec = {"input_ids": batch["input_ids"][b, :n].tolist(), "labels": batch["labels"][b, :n].tolist()}
            if "token_type_ids" in batch:
                rec["token_type_ids"] = batch["token_type_ids"][b, :n].tolist()
            f.write(json.dumps(rec) + "\n")


def encoder_file(pm, out_dir):
    """PEFT's encoder weights under our names (prompt_encoder.safetensors): for resuming and for
    gradient checks of encoder weights."""
    tensors = {}
    for n, p in pm.named_parameters():
        if n.startswith("prompt_encoder.default."):
            tensors["prompt_encoder." + n[len("prompt_encoder.default."):]] = p.detach().clone().contiguous()
    save_file(tensors, os.path.join(out_dir, "prompt_encoder.safetensors"), metadata={"format": "pt"})
    return tensors


def check_method(report, tmp, fam, base_dir, name, data, batch):
    """The three checks of the module docstring for one method on one family; returns the folder
    our training wrote."""
    virtual = not name.startswith("prefix")
    mask = real_mask(batch, virtual)
    tag = f"{fam.kind} {name}"
    # 1. PEFT -> ours.
    torch.manual_seed(1)
    pm = fam.wrap(fam.load(base_dir), peft_config(name, fam.task_type))
    peft_dir = os.path.join(tmp, f"peft_{fam.kind}_{name}")
    pm.save_pretrained(peft_dir)
    pm.zero_grad()
    logits, loss = fam.run(pm, batch, virtual)
    loss.backward()
    ref_logits = logits.detach().numpy()
    ours = model_ref.run_oracle(base_dir, batch, grads=True, extra_args=["--adapter", peft_dir])
    report.check(f"{tag}: PEFT's folder, our logits", rel_logits(ours["logits"], ref_logits, mask), LOGITS_REL,
                 "logits rel error")
    report.check(f"{tag}: PEFT's folder, our loss", abs(float(ours["loss"][0]) - float(loss)) / float(loss),
                 LOSS_REL, "loss rel error")
    # 2. Gradients of the trainable parameters.
    encoder = name in ("ptuning-mlp", "ptuning-lstm", "prefix-projection")
    if encoder:
        enc_dir = os.path.join(tmp, f"enc_{fam.kind}_{name}")
        pm.save_pretrained(enc_dir)
        encoder_file(pm, enc_dir)
        ours_g = model_ref.run_oracle(base_dir, batch, grads=True, extra_args=["--adapter", enc_dir])
        ref_grads = {"prompt_encoder." + n[len("prompt_encoder.default."):]: p.grad.numpy()
                     for n, p in pm.named_parameters() if p.requires_grad and p.grad is not None}
        report.check(f"{tag}: encoder folder, our logits", rel_logits(ours_g["logits"], ref_logits, mask),
                     LOGITS_REL, "logits rel error")
    else:
        ours_g = ours
        (p,) = [p for p in pm.parameters() if p.requires_grad]
        ref_grads = {"prompt_embeddings": p.grad.numpy()}
    worst = 0.0
    for n, g in ref_grads.items():
        key = "grad." + n
        if key not in ours_g:
            print(f"FAIL {tag}: no gradient {n} from us (have {sorted(k for k in ours_g if k.startswith('grad.'))})")
            report.failed += 1
            continue
        worst = max(worst, float(np.abs(ours_g[key] - g).max() / max(np.abs(g).max(), 1e-12)))
    report.check(f"{tag}: one-step gradients ({len(ref_grads)} tensors)", worst, GRAD_REL, "grad rel error")
    # 3. ours -> PEFT, after training here.
    ours_dir = os.path.join(tmp, f"ours_{fam.kind}_{name}")
    peft_cmd("train", "--model", base_dir, "--data", data, "--out", ours_dir, "--max-steps", 8, "--lr", 3e-2,
             "--batch-size", 3, "--no-shuffle", "--num-virtual-tokens", P, *METHODS[name][2])
    losses = [json.loads(line)["loss"] for line in open(os.path.join(ours_dir, "metrics.jsonl"))]
    report.check(f"{tag}: training lowers the loss ({losses[0]:.3f} -> {losses[-1]:.3f})",
                 losses[-1] - losses[0], -1e-3, "loss change")
    with open(os.path.join(ours_dir, "adapter_config.json")) as f:
        task = json.load(f)["task_type"]
    report.check(f"{tag}: our folder's task_type {task}", float(task != fam.task_type), 0, "wrong task_type")
    loaded = fam.load_peft(fam.load(base_dir), ours_dir)
    with torch.no_grad():
        ref2 = fam.run(loaded, batch, virtual)[0].numpy()
    ours2 = model_ref.run_oracle(base_dir, batch, grads=False, extra_args=["--adapter", ours_dir])
    report.check(f"{tag}: our folder loaded by PEFT", rel_logits(ours2["logits"], ref2, mask), LOGITS_REL,
                 "logits rel error")
    return ours_dir


def check_family(report, tmp, fam):
    """Every method of METHODS on one family; returns (base_dir, data path, batch)."""
    batch = fam.batch(3)
    data = os.path.join(tmp, f"data_{fam.kind}.jsonl")
    write_data(data, batch)
    base_dir = os.path.join(tmp, fam.kind)
    fam.make(base_dir)
    for name in METHODS:
        check_method(report, tmp, fam, base_dir, name, data, batch)
    return base_dir, data, batch
