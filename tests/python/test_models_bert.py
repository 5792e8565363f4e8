#!/usr/bin/env python3
"""BERT (BertForMaskedLM) against transformers: masked-LM logits, loss and every weight's gradient
on a padded batch with token types (tied and untied decoder), and `peft eval` on masked-LM
records against the token-weighted loss."""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_ref  # noqa: E402

model_ref.ensure_env()

import torch  # noqa: E402
from transformers import BertConfig, BertForMaskedLM  # noqa: E402

TINY = dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128, max_position_embeddings=64, type_vocab_size=2,
            layer_norm_eps=1e-12)
MASK_ID = 3


def mlm_batch(lengths, seed):
    ids, mask, _ = model_ref.padded_batch(512, lengths, seed=seed, ignore_some=False)
    g = torch.Generator().manual_seed(seed + 1)
    chosen = (torch.rand(ids.shape, generator=g) < 0.3) & (mask == 1)
    chosen[0, 1] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    ids = torch.where(chosen, torch.full_like(ids, MASK_ID), ids)
    types = (torch.rand(ids.shape, generator=g) < 0.5).long() * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels}


def main():
    report = model_ref.Report()
    with tempfile.TemporaryDirectory() as tmp:
        for i, tied in enumerate((True, False)):
            name = f"bert {'tied' if tied else 'untied'}"
            cfg = BertConfig(**TINY, tie_word_embeddings=tied)
            cfg._attn_implementation = "eager"
            torch.manual_seed(40 + i)
            model = BertForMaskedLM(cfg).float().eval()
            model_ref.scale_init(model, 40 + i)
            d = os.path.join(tmp, f"m{i}")
            model.save_pretrained(d, safe_serialization=True)
            inputs = mlm_batch([13, 9, 5], seed=50 + i)
            model_ref.compare(report, name, model, inputs, model_ref.run_oracle(d, inputs))

            # peft eval on {"input_ids", "labels"} records: MLM loss at labelled positions.
            recs = {k: v for k, v in inputs.items() if k != "token_type_ids"}
            with torch.no_grad():
                ref = float(model(**recs).loss)
            for bs in (1, 3):
                got = model_ref.eval_cli(d, recs["input_ids"], recs["attention_mask"],
                                         recs["labels"], bs)
                report.check(f"{name} eval --batch-size {bs}", abs(got["loss"] - ref) / ref,
                             model_ref.LOSS_REL, "eval loss rel error")
                if got["tokens"] != int((recs["labels"] != -100).sum()):
                    report.check(f"{name} eval tokens", 1, 0, "eval token count mismatch")
    report.finish()


if __name__ == "__main__":
    main()
