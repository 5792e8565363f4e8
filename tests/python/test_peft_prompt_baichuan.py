#!/usr/bin/env python3
"""The prompt-learning family against Hugging Face PEFT (pinned) on a tiny random Baichuan-7B
(fused W_pack, multi-head attention): prompt, P-Tuning (MLP, LSTM), prefix with and without
projection (= P-Tuning v2), each checked both ways as prompt_ref.py says.

transformers does not ship Baichuan; the base model is our PyTorch port of its modelling file
(baichuan_ref.py, checked against our build in test_models_baichuan.py), which keeps the
original's inputs_embeds and past_key_values. PEFT wraps it as it would the remote-code model:
get_peft_model / PeftModel.from_pretrained with task_type CAUSAL_LM (PeftModelForCausalLM, which
reads model.config and model.prepare_inputs_for_generation as it does on a transformers model).
"""
import json
import os
import sys
import tempfile

import model_ref

model_ref.ensure_env(extra_modules=("peft",))

import torch  # noqa: E402
from peft import PeftModel, get_peft_model  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import baichuan_ref  # noqa: E402
from prompt_ref import check_family  # noqa: E402


class Baichuan:
    kind = "baichuan"
    task_type = "CAUSAL_LM"
    vocab = 97

    def make(self, path):
        torch.manual_seed(0)
        cfg = baichuan_ref.BaichuanConfig(vocab_size=self.vocab, hidden_size=64, intermediate_size=96,
                                          num_hidden_layers=2, num_attention_heads=4,
                                          max_position_embeddings=64)
        m = baichuan_ref.BaiChuanForCausalLM(cfg).float()
        model_ref.scale_init(m, 0)
        os.makedirs(path, exist_ok=True)
        model_ref.write_config(path, cfg.to_json())
        state = {k: v.contiguous() for k, v in m.state_dict().items()
                 if not k.endswith(("inv_freq", "cos_cached", "sin_cached"))}
        save_file(state, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})

    def load(self, path):
        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
        fields = baichuan_ref.BaichuanConfig().__dict__
        m = baichuan_ref.BaiChuanForCausalLM(
            baichuan_ref.BaichuanConfig(**{k: v for k, v in cfg.items() if k in fields})).float()
        missing, unexpected = m.load_state_dict(load_file(os.path.join(path, "model.safetensors")), strict=False)
        assert not unexpected and all(k.endswith("inv_freq") for k in missing), (missing, unexpected)
        return m.eval()

    def wrap(self, base, config):
        return get_peft_model(base, config)

    def load_peft(self, base, folder):
        return PeftModel.from_pretrained(base, folder).eval()

    def batch(self, seed):
        ids, mask, labels = model_ref.padded_batch(self.vocab, [9, 6, 11], seed=seed)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def run(self, pm, batch, virtual):
        out = pm(**batch)
        return out.logits, out.loss


def main():
    report = model_ref.Report()
    with tempfile.TemporaryDirectory() as tmp:
        check_family(report, tmp, Baichuan())
    report.finish()


if __name__ == "__main__":
    sys.exit(main())
