#!/usr/bin/env python3
"""LoRA on BERT (BertForMaskedLM) against Hugging Face PEFT, with bias="all" (every bias tensor
trained, LayerNorm and MLM-head biases included):

1. an adapter PEFT writes (LoRA B and every bias perturbed) loads here with the same masked-LM
   logits (1e-4);
2. an adapter `peft train` writes on masked-LM records loads in PEFT with the same logits;
3. `peft merge` writes a folder transformers loads whose logits equal the adapter's (1e-5).
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_ref  # noqa: E402
from model_ref import max_masked_diff, peft_cmd  # noqa: E402

model_ref.ensure_env(extra_modules=("peft",))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig, PeftModel  # noqa: E402
from transformers import BertConfig, BertForMaskedLM  # noqa: E402

LOGITS_ABS = model_ref.LOGITS_ABS  # 1e-4
MERGE_ABS = 1e-5
VOCAB = 512
MASK_ID = 3


def tiny_bert(path, seed):
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=64, type_vocab_size=2,
                     layer_norm_eps=1e-12)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    m = BertForMaskedLM(cfg).float()
    model_ref.scale_init(m, seed)
    m.save_pretrained(path, safe_serialization=True)
    return m.eval()


def mlm_batch(lengths, seed):
    """A right-padded masked-LM batch: ~30% of the real tokens masked and labelled."""
    ids, mask, _ = model_ref.padded_batch(VOCAB, lengths, seed=seed, ignore_some=False)
    g = torch.Generator().manual_seed(seed + 1)
    chosen = (torch.rand(ids.shape, generator=g) < 0.3) & (mask == 1)
    chosen[:, 1] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    ids = torch.where(chosen, torch.full_like(ids, MASK_ID), ids)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def write_records(path, batch):
    with open(path, "w") as f:
        for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
            n = int(mask.sum())
            f.write(json.dumps({"input_ids": ids[:n].tolist(), "labels": labels[:n].tolist()}) + "\n")


def our_logits(model_dir, batch, adapter):
    return model_ref.run_oracle(model_dir, batch, grads=False, extra_args=["--adapter", adapter])["logits"]


def main():
    report = model_ref.Report()
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = os.path.join(tmp, "base")
        base = tiny_bert(base_dir, 60)
        batch = mlm_batch([13, 9, 6, 11], seed=61)
        mask = batch["attention_mask"]
        with torch.no_grad():
            plain = base(**batch).logits.numpy()

        # 1. PEFT -> ours.
        peft_dir = os.path.join(tmp, "peft_adapter")
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value", "output.dense"], bias="all",
                         lora_dropout=0.0)
        pm = model_ref.saved_peft_adapter(tiny_bert(os.path.join(tmp, "scratch"), 60), cfg, 62, peft_dir)
        with torch.no_grad():
            ref = pm(**batch).logits.numpy()
        report.check("PEFT adapter changes the logits", -max_masked_diff(ref, plain, mask), -1e-2,
                     "minus max logit change")
        ours = our_logits(base_dir, batch, peft_dir)
        report.check("PEFT bias=all BERT adapter, our logits", max_masked_diff(ours, ref, mask), LOGITS_ABS,
                     "logits max abs error")

        # 2. ours -> PEFT: trained on masked-LM records.
        data = os.path.join(tmp, "mlm.jsonl")
        write_records(data, batch)
        ours_dir = os.path.join(tmp, "ours_adapter")
        peft_cmd("train", "--model", base_dir, "--data", data, "--out", ours_dir, "--max-steps", 3, "--lr", 5e-2,
                 "--r", 4, "--lora-bias", "all", "--batch-size", 4)
        loaded = PeftModel.from_pretrained(BertForMaskedLM.from_pretrained(base_dir), ours_dir).eval()
        ln_bias = loaded.base_model.model.bert.encoder.layer[0].output.LayerNorm.bias
        moved = float((ln_bias - base.bert.encoder.layer[0].output.LayerNorm.bias).abs().max())
        report.check("LayerNorm bias trained and loaded by PEFT", -moved, -1e-4, "minus change")
        with torch.no_grad():
            ref2 = loaded(**batch).logits.numpy()
        ours2 = our_logits(base_dir, batch, ours_dir)
        report.check("our BERT adapter loaded by PEFT", max_masked_diff(ours2, ref2, mask), LOGITS_ABS,
                     "logits max abs error")

        # 3. merge -> a plain HF folder.
        merged_dir = os.path.join(tmp, "merged")
        peft_cmd("merge", "--model", base_dir, "--adapter", ours_dir, "--out", merged_dir)
        with torch.no_grad():
            ref3 = BertForMaskedLM.from_pretrained(merged_dir).eval()(**batch).logits.numpy()
        report.check("merged BERT folder in transformers vs adapter", max_masked_diff(ref3, ref2, mask),
                     MERGE_ABS * max(1.0, float(np.abs(ref2).max())), "logits max abs error")
    report.finish()


if __name__ == "__main__":
    main()
