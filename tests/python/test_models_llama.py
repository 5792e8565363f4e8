#!/usr/bin/env python3
"""Llama against transformers: logits, loss and every weight's gradient on a padded batch (MHA
tied, GQA untied with attention_bias and mlp_bias, rope_theta), and `peft eval` against the
token-weighted loss."""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_ref  # noqa: E402

model_ref.ensure_env()

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            vocab_size=512, max_position_embeddings=512, rms_norm_eps=1e-5)

CASES = [
    ("llama mha tied", dict(num_key_value_heads=4, tie_word_embeddings=True)),
    ("llama gqa untied biases", dict(num_key_value_heads=2, tie_word_embeddings=False,
                                     attention_bias=True, mlp_bias=True, rope_theta=500000.0)),
]


def main():
    report = model_ref.Report()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, extra) in enumerate(CASES):
            cfg = LlamaConfig(**TINY, **extra)
            cfg._attn_implementation = "eager"
            torch.manual_seed(20 + i)
            model = LlamaForCausalLM(cfg).float().eval()
            model_ref.scale_init(model, 20 + i)
            d = os.path.join(tmp, f"m{i}")
            model.save_pretrained(d, safe_serialization=True)
            model_ref.check_decoder(report, name, model, d, seed=30 + i)
    report.finish()


if __name__ == "__main__":
    main()
