#!/usr/bin/env python3
"""The prompt-learning family against Hugging Face PEFT (pinned), on tiny random Qwen2 (GQA) and
Llama: soft prompt tuning (`prompt`), P-Tuning v1 (`ptuning`, MLP and LSTM encoders), prefix
tuning (`prefix`, with and without projection) and P-Tuning v2 (`ptuning-v2`).

Per method and model:
1. PEFT -> ours: the folder PEFT writes loads here with the same logits (1e-5 relative to the
   largest logit) and the same loss;
2. one-step gradients of the trainable parameters (the prompt table, or the encoder's weights,
   handed to us in our prompt_encoder.safetensors) within 1e-4 of PEFT's;
3. ours -> PEFT: `peft train` lowers the loss, and its folder loads in PeftModel with our logits.
Then: resuming a P-Tuning run from a checkpoint gives a bit-identical adapter, and LoRA + prefix
stacked equals the prefix alone on the LoRA-merged model.
"""
import json
import os
import sys
import tempfile

import model_ref
from model_ref import peft_cmd

model_ref.ensure_env(extra_modules=("peft",))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from peft import (LoraConfig, PeftModel, PrefixTuningConfig, PromptEncoderConfig,  # noqa: E402
                  PromptTuningConfig, get_peft_model)
from safetensors.torch import save_file  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

LOGITS_REL = 1e-5  # max |ours - PEFT| / max |PEFT| over real positions
LOSS_REL = 1e-5
GRAD_REL = 1e-4
VOCAB = 97
P = 5


def tiny(kind, path):
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  tie_word_embeddings=False, rms_norm_eps=1e-6)
    torch.manual_seed(0)
    m = Qwen2ForCausalLM(Qwen2Config(**common)) if kind == "qwen2" else LlamaForCausalLM(LlamaConfig(**common))
    model_ref.scale_init(m, 0)
    m.save_pretrained(path, safe_serialization=True)
    return m


def load_base(kind, path):
    cls = Qwen2ForCausalLM if kind == "qwen2" else LlamaForCausalLM
    return cls.from_pretrained(path)


def configs():
    return {
        "prompt": lambda: PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P),
        "ptuning-mlp": lambda: PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=P,
                                                   encoder_hidden_size=24),
        "ptuning-lstm": lambda: PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=P,
                                                    encoder_hidden_size=12,
                                                    encoder_reparameterization_type="LSTM"),
        "prefix": lambda: PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P),
        "prefix-projection": lambda: PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P,
                                                        prefix_projection=True, encoder_hidden_size=24),
    }


OUR_FLAGS = {
    "prompt": ["--method", "prompt"],
    "ptuning-mlp": ["--method", "ptuning", "--encoder-hidden-size", 24],
    "ptuning-lstm": ["--method", "ptuning", "--encoder-hidden-size", 12,
                     "--encoder-reparameterization-type", "LSTM"],
    "prefix": ["--method", "ptuning-v2"],
    "prefix-projection": ["--method", "prefix", "--prefix-projection", "--encoder-hidden-size", 24],
}


def batch_of(seed):
    ids, mask, labels = model_ref.padded_batch(VOCAB, [9, 6, 11], seed=seed)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def real_mask(batch, virtual):
    m = batch["attention_mask"].bool().numpy()
    if virtual:
        m = np.concatenate([np.ones((m.shape[0], P), bool), m], axis=1)
    return m


def rel_logits(ours, ref, mask):
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref)[mask].max() / np.abs(ref[mask]).max())


def write_data(path, batch):
    with open(path, "w") as f:
        for b in range(batch["input_ids"].shape[0]):
            n = int(batch["attention_mask"][b].sum())
            f.write(json.dumps({"input_ids": batch["input_ids"][b, :n].tolist(),
                                "labels": batch["labels"][b, :n].tolist()}) + "\n")


def encoder_file(pm, out_dir):
    """PEFT's encoder weights under our names (prompt_encoder.safetensors): for resuming and for
    gradient checks of encoder weights."""
    tensors = {}
    for n, p in pm.named_parameters():
        if n.startswith("prompt_encoder.default."):
            tensors["prompt_encoder." + n[len("prompt_encoder.default."):]] = p.detach().clone().contiguous()
    save_file(tensors, os.path.join(out_dir, "prompt_encoder.safetensors"), metadata={"format": "pt"})
    return tensors


def check_method(report, tmp, kind, base_dir, name, make_config, data, batch):
    virtual = not name.startswith("prefix")
    mask = real_mask(batch, virtual)
    tag = f"{kind} {name}"
    # 1. PEFT -> ours.
    torch.manual_seed(1)
    pm = get_peft_model(load_base(kind, base_dir), make_config())
    peft_dir = os.path.join(tmp, f"peft_{kind}_{name}")
    pm.save_pretrained(peft_dir)
    pm.zero_grad()
    out = pm(**batch)
    out.loss.backward()
    ref_logits = out.logits.detach().numpy()
    ours = model_ref.run_oracle(base_dir, batch, grads=True, extra_args=["--adapter", peft_dir])
    report.check(f"{tag}: PEFT's folder, our logits", rel_logits(ours["logits"], ref_logits, mask), LOGITS_REL,
                 "logits rel error")
    report.check(f"{tag}: PEFT's folder, our loss", abs(float(ours["loss"][0]) - float(out.loss)) / float(out.loss),
                 LOSS_REL, "loss rel error")
    # 2. Gradients of the trainable parameters.
    encoder = name in ("ptuning-mlp", "ptuning-lstm", "prefix-projection")
    if encoder:
        enc_dir = os.path.join(tmp, f"enc_{kind}_{name}")
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
    ours_dir = os.path.join(tmp, f"ours_{kind}_{name}")
    peft_cmd("train", "--model", base_dir, "--data", data, "--out", ours_dir, "--max-steps", 8, "--lr", 3e-2,
             "--batch-size", 3, "--no-shuffle", "--num-virtual-tokens", P, *OUR_FLAGS[name])
    losses = [json.loads(line)["loss"] for line in open(os.path.join(ours_dir, "metrics.jsonl"))]
    report.check(f"{tag}: training lowers the loss ({losses[0]:.3f} -> {losses[-1]:.3f})",
                 losses[-1] - losses[0], -1e-3, "loss change")
    loaded = PeftModel.from_pretrained(load_base(kind, base_dir), ours_dir).eval()
    with torch.no_grad():
        ref2 = loaded(**batch).logits.numpy()
    ours2 = model_ref.run_oracle(base_dir, batch, grads=False, extra_args=["--adapter", ours_dir])
    report.check(f"{tag}: our folder loaded by PEFT", rel_logits(ours2["logits"], ref2, mask), LOGITS_REL,
                 "logits rel error")
    return ours_dir


def main():
    report = model_ref.Report()
    with tempfile.TemporaryDirectory() as tmp:
        batch = batch_of(3)
        data = os.path.join(tmp, "data.jsonl")
        write_data(data, batch)
        for kind in ("qwen2", "llama"):
            base_dir = os.path.join(tmp, kind)
            tiny(kind, base_dir)
            for name, make in configs().items():
                check_method(report, tmp, kind, base_dir, name, make, data, batch)

        base_dir = os.path.join(tmp, "qwen2")
        # Resume: 4 steps straight vs resumed from its checkpoint-2 (P-Tuning LSTM with dropout: encoder
        # weights, AdamW state and dropout RNG all restored).
        flags = ["--model", base_dir, "--data", data, "--max-steps", 4, "--lr", 1e-2, "--batch-size", 2,
                 "--encoder-dropout", 0.1, "--encoder-num-layers", 2,
                 "--num-virtual-tokens", P, "--method", "ptuning", "--encoder-reparameterization-type", "LSTM",
                 "--encoder-hidden-size", 8, "--save-every", 2]
        a, b = os.path.join(tmp, "resume_a"), os.path.join(tmp, "resume_b")
        peft_cmd("train", "--out", a, *flags)
        peft_cmd("train", "--out", b, "--resume", os.path.join(a, "checkpoint-2"), *flags)
        same = all(open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read()
                   for f in ("adapter_model.safetensors", "prompt_encoder.safetensors"))
        report.check("ptuning LSTM resume is bit-identical", 0.0 if same else 1.0, 0.0, "files differ")

        # LoRA + prefix stacked == prefix alone on the LoRA-merged model.
        lora_dir = os.path.join(tmp, "lora")
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], lora_dropout=0.0)
        model_ref.saved_peft_adapter(load_base("qwen2", base_dir), cfg, 5, lora_dir)
        merged = os.path.join(tmp, "merged")
        peft_cmd("merge", "--model", base_dir, "--adapter", lora_dir, "--out", merged)
        prefix_dir = os.path.join(tmp, "ours_qwen2_prefix-projection")
        stacked = model_ref.run_oracle(base_dir, batch, grads=False,
                                       extra_args=["--adapter", lora_dir, "--adapter", prefix_dir])["logits"]
        alone = model_ref.run_oracle(merged, batch, grads=False, extra_args=["--adapter", prefix_dir])["logits"]
        report.check("LoRA + prefix stacked == prefix on the merged model",
                     rel_logits(stacked, alone, real_mask(batch, False)), LOGITS_REL, "logits rel error")
    report.finish()


if __name__ == "__main__":
    sys.exit(main())
