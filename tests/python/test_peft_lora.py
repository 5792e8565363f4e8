#!/usr/bin/env python3
"""LoRA against Hugging Face PEFT (pinned in tests/requirements.txt), on a tiny random Qwen2:

1. an adapter PEFT writes loads here with the same logits (1e-4);
2. an adapter `peft train` writes loads in PEFT (PeftModel.from_pretrained) with the same logits;
3. `peft merge` writes a folder transformers loads whose logits equal the adapter's (1e-5);
4. 10 AdamW steps of LoRA (started from the same adapter file) and of full fine-tuning match
   PyTorch + PEFT's losses within 1e-4 relative at every step;
5. bias="all" / "lora_only" adapters (trained base biases, stored where PEFT's LoRA wrapper keeps
   them) load both ways with the same logits, and merge with their biases.
"""
import json
import os
import sys
import tempfile

import model_ref
from model_ref import max_masked_diff, peft_cmd

model_ref.ensure_env(extra_modules=("peft",))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig, PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

LOGITS_ABS = model_ref.LOGITS_ABS  # 1e-4
MERGE_ABS = 1e-5
STEP_LOSS_REL = 1e-4
VOCAB = 97


def tiny_qwen2(path):
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False, rms_norm_eps=1e-6)
    torch.manual_seed(0)
    m = Qwen2ForCausalLM(cfg)
    model_ref.scale_init(m, 0)
    m.save_pretrained(path, safe_serialization=True)
    return m.eval()


def records(path, lengths, seed):
    """Pre-tokenised records (some labels -100) and the right-padded batch PyTorch sees."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    with open(path, "w") as f:
        for n in lengths:
            ids = torch.randint(1, VOCAB, (n,), generator=g).tolist()
            labels = list(ids)
            labels[1] = -100
            rows.append((ids, labels))
            f.write(json.dumps({"input_ids": ids, "labels": labels}) + "\n")
    T = max(lengths)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    labels = torch.full((len(rows), T), -100, dtype=torch.long)
    for b, (i, l) in enumerate(rows):
        ids[b, :len(i)] = torch.tensor(i)
        mask[b, :len(i)] = 1
        labels[b, :len(i)] = torch.tensor(l)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def our_logits(model_dir, batch, adapter=None):
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    extra = ["--adapter", adapter] if adapter else []
    return model_ref.run_oracle(model_dir, inputs, grads=False, extra_args=extra)["logits"]


def metrics_losses(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f]


def torch_train(model, params, batch, steps, lr, weight_decay):
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def compare_steps(report, name, ours, ref):
    worst = max(abs(a - b) / abs(b) for a, b in zip(ours, ref))
    report.check(f"{name} ({len(ref)} steps; torch {ref[0]:.4f} -> {ref[-1]:.4f})", worst if len(ours) == len(ref)
                 else float("inf"), STEP_LOSS_REL, "step loss rel error")


def main():
    report = model_ref.Report()
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = os.path.join(tmp, "base")
        base = tiny_qwen2(base_dir)
        data = os.path.join(tmp, "data.jsonl")
        batch = records(data, [9, 13, 6, 11], seed=1)

        # 1. PEFT -> ours. B is randomised so the adapter changes the output.
        peft_dir = os.path.join(tmp, "peft_adapter")
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0)
        pm = model_ref.saved_peft_adapter(tiny_qwen2(os.path.join(tmp, "scratch")), cfg, 3, peft_dir)
        with torch.no_grad():
            ref = pm(**batch).logits.numpy()
        plain = base(**batch).logits.detach().numpy()
        report.check("PEFT adapter changes the logits", -max_masked_diff(ref, plain, batch["attention_mask"]), -1e-2,
                     "minus max logit change")
        ours = our_logits(base_dir, batch, peft_dir)
        report.check("PEFT-written adapter, our logits", max_masked_diff(ours, ref, batch["attention_mask"]),
                     LOGITS_ABS,
                     "logits max abs error")

        # 2. ours -> PEFT, on more targets, with rsLoRA.
        ours_dir = os.path.join(tmp, "ours_adapter")
        peft_cmd("train", "--model", base_dir, "--data", data, "--out", ours_dir, "--max-steps", 3, "--lr", 5e-2,
                 "--r", 4, "--lora-alpha", 16, "--use-rslora", "--target-modules", "q_proj,k_proj,o_proj,up_proj",
                 "--batch-size", 4)
        loaded = PeftModel.from_pretrained(Qwen2ForCausalLM.from_pretrained(base_dir), ours_dir).eval()
        with torch.no_grad():
            ref2 = loaded(**batch).logits.numpy()
        report.check("our adapter changes the logits", -max_masked_diff(ref2, plain, batch["attention_mask"]), -1e-3,
                     "minus max logit change")
        ours2 = our_logits(base_dir, batch, ours_dir)
        report.check("our adapter loaded by PEFT", max_masked_diff(ours2, ref2, batch["attention_mask"]), LOGITS_ABS,
                     "logits max abs error")

        # 3. merge -> a plain HF folder.
        merged_dir = os.path.join(tmp, "merged")
        peft_cmd("merge", "--model", base_dir, "--adapter", ours_dir, "--out", merged_dir)
        merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
        with torch.no_grad():
            ref3 = merged(**batch).logits.numpy()
        report.check("merged folder in transformers vs adapter", max_masked_diff(ref3, ref2, batch["attention_mask"]),
                     MERGE_ABS * max(1.0, float(np.abs(ref2).max())), "logits max abs error")

        # 4a. 10 LoRA steps from the same adapter file (PEFT's), constant lr, no clipping.
        lora_out = os.path.join(tmp, "lora_steps")
        peft_cmd("train", "--model", base_dir, "--data", data, "--out", lora_out, "--adapter", peft_dir,
                 "--max-steps", 10, "--batch-size", 4, "--no-shuffle", "--lr", 1e-2, "--scheduler", "constant",
                 "--clip-grad", 0, "--weight-decay", 0.01)
        trainable = PeftModel.from_pretrained(Qwen2ForCausalLM.from_pretrained(base_dir), peft_dir, is_trainable=True)
        ref_losses = torch_train(trainable, [p for p in trainable.parameters() if p.requires_grad], batch, 10, 1e-2, 0.01)
        compare_steps(report, "LoRA AdamW", metrics_losses(lora_out), ref_losses)

        # 4b. 10 full fine-tuning steps.
        full_out = os.path.join(tmp, "full_steps")
        peft_cmd("train", "--method", "full", "--model", base_dir, "--data", data, "--out", full_out,
                 "--max-steps", 10, "--batch-size", 4, "--no-shuffle", "--lr", 1e-3, "--scheduler", "constant",
                 "--clip-grad", 0)
        full = Qwen2ForCausalLM.from_pretrained(base_dir)
        ref_full = torch_train(full, list(full.parameters()), batch, 10, 1e-3, 0.0)
        compare_steps(report, "full fine-tuning AdamW", metrics_losses(full_out), ref_full)

        # 5a. PEFT -> ours with bias="all": every bias of the model trained (here: perturbed).
        bias_dir = os.path.join(tmp, "peft_bias_all")
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], bias="all", lora_dropout=0.0)
        pm = model_ref.saved_peft_adapter(tiny_qwen2(os.path.join(tmp, "scratch_bias")), cfg, 4, bias_dir)
        with torch.no_grad():
            ref5 = pm(**batch).logits.numpy()
        ours5 = our_logits(base_dir, batch, bias_dir)
        report.check("PEFT bias=all adapter, our logits",
                     max_masked_diff(ours5, ref5, batch["attention_mask"]), LOGITS_ABS,
                     "logits max abs error")

        # 5b. ours -> PEFT with bias="all" and "lora_only", and merged with the trained biases.
        for bias in ("all", "lora_only"):
            ours_bias = os.path.join(tmp, "ours_bias_" + bias)
            peft_cmd("train", "--model", base_dir, "--data", data, "--out", ours_bias, "--max-steps", 3, "--lr",
                     5e-2, "--r", 4, "--lora-bias", bias, "--target-modules", "q_proj,v_proj", "--batch-size", 4)
            loaded = PeftModel.from_pretrained(Qwen2ForCausalLM.from_pretrained(base_dir), ours_bias).eval()
            k_bias = loaded.base_model.model.model.layers[0].self_attn.k_proj.bias
            k_moved = float((k_bias - base.model.layers[0].self_attn.k_proj.bias).abs().max())
            report.check(f"bias={bias}: k_proj bias {'trained' if bias == 'all' else 'untouched'}",
                         -k_moved if bias == "all" else k_moved, -1e-4 if bias == "all" else 0.0,
                         "minus change" if bias == "all" else "change")
            q_bias = loaded.base_model.model.model.layers[0].self_attn.q_proj.base_layer.bias
            q_moved = float((q_bias - base.model.layers[0].self_attn.q_proj.bias).abs().max())
            report.check(f"bias={bias}: targeted q_proj bias trained", -q_moved, -1e-4, "minus change")
            with torch.no_grad():
                ref6 = loaded(**batch).logits.numpy()
            ours6 = our_logits(base_dir, batch, ours_bias)
            report.check(f"our bias={bias} adapter loaded by PEFT",
                         max_masked_diff(ours6, ref6, batch["attention_mask"]), LOGITS_ABS, "logits max abs error")
            merged_bias = os.path.join(tmp, "merged_bias_" + bias)
            peft_cmd("merge", "--model", base_dir, "--adapter", ours_bias, "--out", merged_bias)
            with torch.no_grad():
                ref7 = AutoModelForCausalLM.from_pretrained(merged_bias).eval()(**batch).logits.numpy()
            report.check(f"bias={bias}: merged folder in transformers vs adapter", max_masked_diff(ref7, ref6,
                         batch["attention_mask"]), MERGE_ABS * max(1.0, float(np.abs(ref6).max())),
                         "logits max abs error")
    report.finish()


if __name__ == "__main__":
    sys.exit(main())
