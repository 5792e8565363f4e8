#!/usr/bin/env python3
"""The prompt-learning family against Hugging Face PEFT (pinned), on tiny random Qwen2 (GQA) and
Llama: soft prompt tuning (`prompt`), P-Tuning v1 (`ptuning`, MLP and LSTM encoders), prefix
tuning (`prefix`, with and without projection) and P-Tuning v2 (`ptuning-v2`), each checked both
ways as prompt_ref.py says (BERT and Baichuan: test_peft_prompt_bert.py, _baichuan.py).

Then: resuming a P-Tuning run from a checkpoint gives a bit-identical adapter; LoRA + prefix
stacked equals the prefix alone on the LoRA-merged model, for PEFT's LoRA folder with our prefix
and for a stack trained here (`peft train --method lora,prefix`: the oracle, PEFT and eval; it
resumes bit-identically and continues with --adapter); method flags that disagree with a folder
being continued are refused. (Generation with a trained stack: tests/cli/test_train_cli.cpp.)
"""
import json
import os
import subprocess
import sys
import tempfile

import model_ref
from model_ref import peft_cmd

model_ref.ensure_env(extra_modules=("peft",))

import torch  # noqa: E402
from peft import LoraConfig, PeftModel  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

from prompt_ref import LOGITS_REL, P, Family, check_family, real_mask, rel_logits  # noqa: E402

QWEN2 = Family("qwen2", Qwen2Config, Qwen2ForCausalLM)
LLAMA = Family("llama", LlamaConfig, LlamaForCausalLM)


def eval_loss(model_dir, data, *adapters):
    args = ["eval", "--model", model_dir, "--data", data, "--json"]
    for a in adapters:
        args += ["--adapter", a]
    return json.loads(peft_cmd(*args).strip().splitlines()[-1])["loss"]


def same_files(a, b, names):
    return all(open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read() for f in names)


def check_trained_stack(report, tmp, base_dir, data, batch):
    """`peft train --method lora,prefix`: one sub-folder per method; the stack equals the prefix
    alone on the model with the LoRA merged (ours and PEFT's); it resumes bit-identically and
    continues as a whole with --adapter."""
    flags = ["--model", base_dir, "--data", data, "--max-steps", 6, "--lr", 2e-2, "--batch-size", 2,
             "--method", "lora,prefix", "--r", 4, "--lora-alpha", 8, "--target-modules", "q_proj,v_proj,up_proj",
             "--lora-dropout", 0.1, "--prefix-projection", "--encoder-hidden-size", 16,
             "--num-virtual-tokens", P, "--save-every", 3]
    stack = os.path.join(tmp, "stack")
    peft_cmd("train", "--out", stack, *flags)
    with open(os.path.join(stack, "adapter_stack.json")) as f:
        listed = json.load(f)["adapters"]
    types = [json.load(open(os.path.join(stack, d, "adapter_config.json")))["peft_type"] for d in listed]
    report.check(f"stacked training writes {listed} ({types})",
                 float(listed != ["lora", "prefix"] or types != ["LORA", "PREFIX_TUNING"]), 0, "layout wrong")
    losses = [json.loads(line)["loss"] for line in open(os.path.join(stack, "metrics.jsonl"))]
    report.check(f"lora+prefix training lowers the loss ({losses[0]:.3f} -> {losses[-1]:.3f})",
                 losses[-1] - losses[0], -1e-3, "loss change")

    merged = os.path.join(tmp, "stack_merged")
    peft_cmd("merge", "--model", base_dir, "--adapter", os.path.join(stack, "lora"), "--out", merged)
    prefix = os.path.join(stack, "prefix")
    stacked = model_ref.run_oracle(base_dir, batch, grads=False, extra_args=["--adapter", stack])["logits"]
    alone = model_ref.run_oracle(merged, batch, grads=False, extra_args=["--adapter", prefix])["logits"]
    mask = real_mask(batch, False)
    report.check("trained lora+prefix stack == its prefix on the LoRA-merged model",
                 rel_logits(stacked, alone, mask), LOGITS_REL, "logits rel error")
    pm = PeftModel.from_pretrained(Qwen2ForCausalLM.from_pretrained(merged), prefix).eval()
    with torch.no_grad():
        ref = pm(**batch).logits.numpy()
    report.check("trained stack == PEFT's prefix on the merged model", rel_logits(stacked, ref, mask),
                 LOGITS_REL, "logits rel error")
    a, b = eval_loss(base_dir, data, stack), eval_loss(merged, data, prefix)
    report.check("eval --adapter STACK == eval of the prefix on the merged model", abs(a - b) / b,
                 model_ref.LOSS_REL, "eval loss rel error")
    split = eval_loss(base_dir, data, os.path.join(stack, "lora"), prefix)
    report.check("eval --adapter STACK == --adapter STACK/lora --adapter STACK/prefix", abs(a - split) / split,
                 0.0, "eval loss rel error")

    # Resume from the stack's checkpoint: bit-identical (LoRA dropout RNG, both groups' AdamW state).
    resumed = os.path.join(tmp, "stack_resumed")
    peft_cmd("train", "--out", resumed, "--resume", os.path.join(stack, "checkpoint-3"), *flags)
    files = ["lora/adapter_model.safetensors", "prefix/adapter_model.safetensors",
             "prefix/prompt_encoder.safetensors"]
    report.check("lora+prefix resume is bit-identical", 0.0 if same_files(stack, resumed, files) else 1.0, 0.0,
                 "files differ")
    # --adapter STACK continues the whole stack (the folder's methods; flags that agree are fine).
    cont = os.path.join(tmp, "stack_continued")
    peft_cmd("train", "--model", base_dir, "--data", data, "--out", cont, "--max-steps", 2, "--adapter", stack,
             "--r", 4, "--batch-size", 2)
    with open(os.path.join(cont, "adapter_stack.json")) as f:
        report.check("--adapter STACK continues both methods", float(json.load(f)["adapters"] != ["lora", "prefix"]),
                     0, "layout wrong")
    # A flag that disagrees with the folder is refused, naming both values.
    r = subprocess.run([model_ref.peft_binary(), "train", "--model", base_dir, "--data", data, "--out",
                        os.path.join(tmp, "refused"), "--adapter", stack, "--r", "16"],
                       capture_output=True, text=True)
    ok = r.returncode == 1 and "--r 16" in r.stderr and "r = 4" in r.stderr
    report.check(f"--r 16 with a folder of r 4 is refused ({r.stderr.strip()})", 0.0 if ok else 1.0, 0.0,
                 "not refused")


def main():
    report = model_ref.Report()
    with tempfile.TemporaryDirectory() as tmp:
        check_family(report, tmp, LLAMA)
        base_dir, data, batch = check_family(report, tmp, QWEN2)

        # Resume: 4 steps straight vs resumed from its checkpoint-2 (P-Tuning LSTM with dropout: encoder
        # weights, AdamW state and dropout RNG all restored).
        flags = ["--model", base_dir, "--data", data, "--max-steps", 4, "--lr", 1e-2, "--batch-size", 2,
                 "--encoder-dropout", 0.1, "--encoder-num-layers", 2,
                 "--num-virtual-tokens", P, "--method", "ptuning", "--encoder-reparameterization-type", "LSTM",
                 "--encoder-hidden-size", 8, "--save-every", 2]
        a, b = os.path.join(tmp, "resume_a"), os.path.join(tmp, "resume_b")
        peft_cmd("train", "--out", a, *flags)
        peft_cmd("train", "--out", b, "--resume", os.path.join(a, "checkpoint-2"), *flags)
        same = same_files(a, b, ("adapter_model.safetensors", "prompt_encoder.safetensors"))
        report.check("ptuning LSTM resume is bit-identical", 0.0 if same else 1.0, 0.0, "files differ")

        # LoRA (PEFT's folder) + prefix (ours) stacked == prefix alone on the LoRA-merged model.
        lora_dir = os.path.join(tmp, "lora")
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], lora_dropout=0.0)
        model_ref.saved_peft_adapter(QWEN2.load(base_dir), cfg, 5, lora_dir)
        merged = os.path.join(tmp, "merged")
        peft_cmd("merge", "--model", base_dir, "--adapter", lora_dir, "--out", merged)
        prefix_dir = os.path.join(tmp, "ours_qwen2_prefix-projection")
        stacked = model_ref.run_oracle(base_dir, batch, grads=False,
                                       extra_args=["--adapter", lora_dir, "--adapter", prefix_dir])["logits"]
        alone = model_ref.run_oracle(merged, batch, grads=False, extra_args=["--adapter", prefix_dir])["logits"]
        report.check("LoRA + prefix stacked == prefix on the merged model",
                     rel_logits(stacked, alone, real_mask(batch, False)), LOGITS_REL, "logits rel error")

        check_trained_stack(report, tmp, base_dir, data, batch)
    report.finish()


if __name__ == "__main__":
    sys.exit(main())
