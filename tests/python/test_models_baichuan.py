#!/usr/bin/env python3
"""Baichuan-7B (tiny shapes) against our PyTorch port of its modelling file (baichuan_ref.py):
logits, loss and every weight's gradient on a padded batch (fused W_pack), `peft eval` against
the token-weighted loss, and a checkpoint written by `peft init --arch baichuan` scored by the
port (our files load in the reference)."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_ref  # noqa: E402

model_ref.ensure_env()

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import baichuan_ref  # noqa: E402

TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=512)


def save(model, d):
    os.makedirs(d, exist_ok=True)
    model_ref.write_config(d, model.config.to_json())
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if not k.endswith("rotary_emb.inv_freq")}
    save_file(state, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})


def main():
    report = model_ref.Report()
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(60)
        model = baichuan_ref.BaiChuanForCausalLM(baichuan_ref.BaichuanConfig(**TINY)).float().eval()
        model_ref.scale_init(model, 60)
        d = os.path.join(tmp, "m")
        save(model, d)
        model_ref.check_decoder(report, "baichuan", model, d, seed=61)

        # The other direction: a folder from `peft init` loads into the port (strict) and both
        # give the same logits.
        d2 = os.path.join(tmp, "init")
        r = subprocess.run([model_ref.peft_binary(), "init", "--arch", "baichuan", "--preset",
                            "tiny", "--out", d2, "--seed", "3"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(d2, "config.json")) as f:
            cfg = json.load(f)
        fields = baichuan_ref.BaichuanConfig().__dict__
        ported = baichuan_ref.BaiChuanForCausalLM(baichuan_ref.BaichuanConfig(
            **{k: v for k, v in cfg.items() if k in fields})).float().eval()
        missing, unexpected = ported.load_state_dict(load_file(os.path.join(d2, "model.safetensors")),
                                                     strict=False)
        missing = [m for m in missing if not m.endswith("inv_freq")]
        report.check("peft init baichuan loads in the port", len(missing) + len(unexpected), 0,
                     "missing+unexpected tensors")
        ids, mask, labels = model_ref.padded_batch(512, [7, 4], seed=62)
        inputs = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        model_ref.compare(report, "peft init baichuan", ported, inputs,
                          model_ref.run_oracle(d2, inputs, grads=False), check_grads=False)
    report.finish()


if __name__ == "__main__":
    main()
