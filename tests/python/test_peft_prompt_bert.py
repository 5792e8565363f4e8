#!/usr/bin/env python3
"""The prompt-learning family against Hugging Face PEFT (pinned) on a tiny random BERT masked LM
(BertForMaskedLM, eager attention, token types): prompt, P-Tuning (MLP, LSTM), prefix with and
without projection (= P-Tuning v2), each checked both ways as prompt_ref.py says.

The reference is PEFT's own code, not a port. PEFT has no masked-LM task type; the wrapper whose
forward is ours is PeftModelForTokenClassification (task_type TOKEN_CLS, which our BERT folders
say): for prompt / P-Tuning it puts the virtual tokens in front through inputs_embeds (positions
0 ... P-1, token type 0, the mask P ones in front); for prefix tuning, since BertForMaskedLM's
forward takes no past_key_values, its _prefix_tuning_forward runs the backbone (BertModel) with
past_key_values and the mask with P ones in front (tokens at positions P ... P+T-1, token types
kept), then applies the model's head module. PEFT finds that head by the names "classifier" /
"score"; BertForMaskedLM calls it "cls", so the test names it (pm.cls_layer_name = "cls"), which
makes PEFT's path exactly BertForMaskedLM's head on the prefixed encoder. Labels stay out of
PEFT's call (its token-classification loss is over num_labels classes); the loss is
BertForMaskedLM's: cross-entropy at labelled positions, P x -100 in front for virtual tokens.
"""
import sys

import model_ref

model_ref.ensure_env(extra_modules=("peft",))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from peft import PeftModel, get_peft_model  # noqa: E402
from transformers import BertConfig, BertForMaskedLM  # noqa: E402

import tempfile  # noqa: E402

from prompt_ref import P, check_family  # noqa: E402

MASK_ID = 3


class Bert:
    kind = "bert"
    task_type = "TOKEN_CLS"
    vocab = 97

    def make(self, path):
        cfg = BertConfig(vocab_size=self.vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=96, max_position_embeddings=64, type_vocab_size=2,
                         layer_norm_eps=1e-12, tie_word_embeddings=True)
        torch.manual_seed(0)
        m = BertForMaskedLM(cfg)
        model_ref.scale_init(m, 0)
        m.save_pretrained(path, safe_serialization=True)

    def load(self, path):
        return BertForMaskedLM.from_pretrained(path, attn_implementation="eager").eval()

    @staticmethod
    def _fix(pm):
        pm.cls_layer_name = "cls"  # the MLM head (PEFT looks for "classifier" / "score")
        return pm.eval()  # BERT's hidden dropout off, as in our oracle

    def wrap(self, base, config):
        return self._fix(get_peft_model(base, config))

    def load_peft(self, base, folder):
        pm = PeftModel.from_pretrained(base, folder)
        assert type(pm).__name__ == "PeftModelForTokenClassification", type(pm)
        return self._fix(pm)

    def batch(self, seed):
        ids, mask, _ = model_ref.padded_batch(self.vocab, [9, 6, 11], seed=seed, ignore_some=False)
        g = torch.Generator().manual_seed(seed + 1)
        chosen = (torch.rand(ids.shape, generator=g) < 0.4) & (mask == 1)
        chosen[:, 1] = True
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        ids = torch.where(chosen, torch.full_like(ids, MASK_ID), ids)
        types = (torch.rand(ids.shape, generator=g) < 0.5).long() * mask
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels}

    def run(self, pm, batch, virtual):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = pm(**inputs).logits
        labels = batch["labels"]
        if virtual:
            labels = torch.cat([torch.full((labels.shape[0], P), -100), labels], dim=1)
        return logits, F.cross_entropy(logits.reshape(-1, self.vocab), labels.reshape(-1))


def main():
    report = model_ref.Report()
    with tempfile.TemporaryDirectory() as tmp:
        check_family(report, tmp, Bert())
    report.finish()


if __name__ == "__main__":
    sys.exit(main())
