#!/usr/bin/env python3
"""PET (`peft classify`, `peft train --task pet`) against an independent PyTorch implementation
on tiny random BERT (BertForMaskedLM) and Qwen2 (Qwen2ForCausalLM) with real tokenizers:
class probabilities (1e-5), a 5-step full fine-tune trajectory (1e-4 rel per step), pattern
ensembles = mean of member class scores, the multi-token verbalizer error, PET's auxiliary MLM
loss and ensemble distillation (soft targets, KL at T = 2), and seq-cls logits through
`peft classify --adapter` against BertForSequenceClassification and
Qwen2ForSequenceClassification (last token), 1e-5.

The reference reads the PET contract (FORMATS.md) on its own: each pattern piece tokenised alone
by the HF tokenizer; BERT: [CLS] pieces [MASK] pieces [SEP], scores at [MASK]; decoders: the
pieces before {mask} (whitespace before it moved into the word), scores = next-token logits at
the last token; class score = mean raw logit of the label's words; loss = CE over class scores."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_ref  # noqa: E402

model_ref.ensure_env()

import torch  # noqa: E402
from transformers import (AutoTokenizer, BertConfig, BertForMaskedLM,  # noqa: E402
                          BertForSequenceClassification, Qwen2Config, Qwen2ForCausalLM,
                          Qwen2ForSequenceClassification)

TOK = os.path.join(model_ref.ROOT, "tests", "assets", "tokenizers")
PROB_ABS = 1e-5
LOSS_REL = 1e-4
RECORDS = [
    {"text": "The film was a delight from start to end.", "label": "positive"},
    {"text": "Terrible acting and a boring plot.", "label": "negative"},
    {"text": "I loved every minute.", "label": "positive"},
    {"text": "Not worth the money at all.", "label": "negative"},
    {"text": "A wonderful cast.", "label": "positive"},
    {"text": "It broke after two days.", "label": "negative"},
]
VERBALIZER = {"negative": ["bad", "poor"], "positive": "good"}
PATTERNS = ["{text} It was {mask}.", "Review: {text} All in all, {mask}!"]


def pieces(pattern):
    out, rest = [], pattern
    while rest:
        i = rest.find("{")
        if i < 0:
            out.append(("lit", rest))
            break
        if i > 0:
            out.append(("lit", rest[:i]))
        j = rest.index("}", i)
        out.append((rest[i + 1:j], None))
        rest = rest[j + 1:]
    return out


def reference_inputs(tok, pattern, text, bert):
    ps = pieces(pattern)
    ids, prefix = ([tok.cls_token_id] if bert else []), ""
    read = None
    for k, (kind, lit) in enumerate(ps):
        if kind == "mask":
            if bert:
                read = len(ids)
                ids.append(tok.mask_token_id)
                continue
            read = len(ids) - 1
            break
        s = text if kind == "text" else lit
        if not bert and k + 1 < len(ps) and ps[k + 1][0] == "mask":
            stripped = s.rstrip(" \t\n")
            prefix, s = s[len(stripped):], stripped
        ids += tok.encode(s, add_special_tokens=False)
    if bert:
        ids.append(tok.sep_token_id)
    return ids, read, prefix


def word_ids(tok, prefix):
    out = []
    for label, words in VERBALIZER.items():
        words = [words] if isinstance(words, str) else words
        out.append([tok.encode(prefix + w, add_special_tokens=False)[0] for w in words])
    return out


def class_scores(model, tok, pattern, records, bert):
    rows = [reference_inputs(tok, pattern, r["text"], bert) for r in records]
    T = max(len(r[0]) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.tensor([r[0] + [pad] * (T - len(r[0])) for r in rows])
    mask = torch.tensor([[1] * len(r[0]) + [0] * (T - len(r[0])) for r in rows])
    logits = model(input_ids=ids, attention_mask=mask).logits
    at = logits[torch.arange(len(rows)), torch.tensor([r[1] for r in rows])]
    words = word_ids(tok, rows[0][2])
    return torch.stack([at[:, w].mean(-1) for w in words], -1)


def write_jsonl(path, records):
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def copy_tokenizer(name, d):
    for f in os.listdir(os.path.join(TOK, name)):
        if f.startswith("tokenizer") or f in ("vocab.txt", "vocab.json", "merges.txt",
                                              "special_tokens_map.json"):
            shutil.copy(os.path.join(TOK, name, f), d)


def make_models(tmp):
    out = []
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    torch.manual_seed(1)
    bert = BertForMaskedLM(cfg).float().eval()
    model_ref.scale_init(bert, 1)
    d = os.path.join(tmp, "bert")
    bert.save_pretrained(d, safe_serialization=True)
    copy_tokenizer("bert-base-uncased", d)
    out.append(("bert", bert, d, True))
    qcfg = Qwen2Config(vocab_size=151936, hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=128, tie_word_embeddings=True)
    qcfg._attn_implementation = "eager"
    torch.manual_seed(2)
    qwen = Qwen2ForCausalLM(qcfg).float().eval()
    model_ref.scale_init(qwen, 2)
    d = os.path.join(tmp, "qwen2")
    qwen.save_pretrained(d, safe_serialization=True)
    copy_tokenizer("qwen2.5", d)
    out.append(("qwen2", qwen, d, False))
    return out


def train_losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f]


def aux_and_distillation(report, tmp, d, data, tok, targets):
    """PET's auxiliary MLM loss, (1 - a)·CE + a·MLM, over 3 full-batch steps, and distillation:
    classify --distill-out writes softmax(ensemble scores / 2); a student trained on it follows
    T²·KL(q ‖ softmax(s / T)) (PET's distillation_loss) over 3 steps."""
    verb = json.dumps(VERBALIZER)
    alpha, steps = 0.3, 3
    # Unlabeled records, pre-tokenised with their masks: every third token of the text masked.
    unl, rows = os.path.join(tmp, "unlabeled.jsonl"), []
    for i, r in enumerate(RECORDS):
        ids = tok(r["text"])["input_ids"]
        inp, lab = list(ids), [-100] * len(ids)
        for t in range(1 + i % 3, len(ids) - 1, 3):
            lab[t], inp[t] = ids[t], tok.mask_token_id
        rows.append({"input_ids": inp, "labels": lab})
    write_jsonl(unl, rows)
    out = os.path.join(tmp, "aux")
    model_ref.peft_cmd("train", "--model", d, "--data", data, "--task", "pet", "--pattern",
                       PATTERNS[0], "--verbalizer", verb, "--method", "full", "--out", out,
                       "--max-steps", steps, "--batch-size", len(RECORDS), "--lr", 1e-3,
                       "--scheduler", "constant", "--clip-grad", 0, "--no-shuffle",
                       "--pet-mlm-weight", alpha, "--unlabeled-data", unl, "--json")
    T = max(len(r["input_ids"]) for r in rows)
    u_ids = torch.tensor([r["input_ids"] + [0] * (T - len(r["input_ids"])) for r in rows])
    u_lab = torch.tensor([r["labels"] + [-100] * (T - len(r["labels"])) for r in rows])
    u_mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (T - len(r["input_ids"]))
                           for r in rows])
    m = BertForMaskedLM.from_pretrained(d).float().train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.0, eps=1e-8)
    refs = []
    for _ in range(steps):
        opt.zero_grad()
        ce = torch.nn.functional.cross_entropy(class_scores(m, tok, PATTERNS[0], RECORDS, True),
                                               targets)
        mlm = m(input_ids=u_ids, attention_mask=u_mask, labels=u_lab).loss
        loss = (1 - alpha) * ce + alpha * mlm
        loss.backward()
        opt.step()
        refs.append(float(loss))
    ours = train_losses(out)
    worst = max(abs(a - b) / abs(b) for a, b in zip(ours, refs)) if len(ours) == steps else 1e9
    report.check("bert PET + auxiliary MLM (alpha 0.3), 3 steps", worst, LOSS_REL,
                 "loss rel error")

    # Distillation: the ensemble's temperature-2 distribution, then a student trained on it.
    soft = os.path.join(tmp, "soft.jsonl")
    unlabeled_text = os.path.join(tmp, "unlabeled-text.jsonl")
    write_jsonl(unlabeled_text, [{"text": r["text"]} for r in RECORDS])
    model_ref.peft_cmd("classify", "--model", d, "--data", unlabeled_text, "--pattern",
                       PATTERNS[0], "--pattern", PATTERNS[1], "--verbalizer", verb,
                       "--distill-out", soft)
    base = BertForMaskedLM.from_pretrained(d).float().eval()
    with torch.no_grad():
        ens = (class_scores(base, tok, PATTERNS[0], RECORDS, True) +
               class_scores(base, tok, PATTERNS[1], RECORDS, True)) / 2
    q_ref = torch.softmax(ens.double() / 2, -1)
    with open(soft) as f:
        got = [json.loads(line)["soft_labels"] for line in f]
    q = torch.tensor([[g["negative"], g["positive"]] for g in got], dtype=torch.float64)
    report.check("bert distill-out = softmax(ensemble scores / 2)",
                 float((q - q_ref).abs().max()), PROB_ABS, "prob abs diff")
    out = os.path.join(tmp, "student")
    model_ref.peft_cmd("train", "--model", d, "--data", soft, "--task", "pet", "--pattern",
                       PATTERNS[0], "--verbalizer", verb, "--method", "full", "--out", out,
                       "--max-steps", steps, "--batch-size", len(RECORDS), "--lr", 1e-3,
                       "--scheduler", "constant", "--clip-grad", 0, "--no-shuffle", "--json")
    m = BertForMaskedLM.from_pretrained(d).float().train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.0, eps=1e-8)
    qf = q.float()
    refs = []
    for _ in range(steps):
        opt.zero_grad()
        s = class_scores(m, tok, PATTERNS[0], RECORDS, True)
        kl = torch.nn.functional.kl_div(torch.log_softmax(s / 2, -1), qf, reduction="sum")
        loss = kl * 4 / s.shape[0]
        loss.backward()
        opt.step()
        refs.append(float(loss))
    ours = train_losses(out)
    worst = max(abs(a - b) / abs(b) for a, b in zip(ours, refs)) if len(ours) == steps else 1e9
    report.check("bert distilled student, KL at T = 2, 3 steps", worst, LOSS_REL,
                 "loss rel error")


def main():
    report = model_ref.Report()
    verb = json.dumps(VERBALIZER)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.jsonl")
        write_jsonl(data, RECORDS)
        targets = torch.tensor([0 if r["label"] == "negative" else 1 for r in RECORDS])
        for name, model, d, bert in make_models(tmp):
            tok = AutoTokenizer.from_pretrained(d)
            member_logit_diffs = []
            for pattern in PATTERNS:
                with torch.no_grad():
                    ref = torch.softmax(class_scores(model, tok, pattern, RECORDS, bert), -1)
                got = json.loads(model_ref.peft_cmd("classify", "--model", d, "--data", data,
                                                    "--pattern", pattern, "--verbalizer", verb,
                                                    "--json").splitlines()[-1])
                ours = torch.tensor([[p["probs"]["negative"], p["probs"]["positive"]]
                                     for p in got["predictions"]], dtype=torch.float64)
                report.check(f"{name} classify '{pattern}'",
                             float((ours - ref.double()).abs().max()), PROB_ABS, "prob abs diff")
                member_logit_diffs.append(torch.log(ours[:, 1] / ours[:, 0]))
            # Ensemble of the two patterns: its class-score difference is the members' mean.
            got = json.loads(model_ref.peft_cmd(
                "classify", "--model", d, "--data", data, "--pattern", PATTERNS[0], "--pattern",
                PATTERNS[1], "--verbalizer", verb, "--json").splitlines()[-1])
            ens = torch.tensor([[p["probs"]["negative"], p["probs"]["positive"]]
                                for p in got["predictions"]], dtype=torch.float64)
            want = (member_logit_diffs[0] + member_logit_diffs[1]) / 2
            report.check(f"{name} ensemble = mean of members",
                         float((torch.log(ens[:, 1] / ens[:, 0]) - want).abs().max()), 1e-6,
                         "score diff")

            # 5 full fine-tuning steps (AdamW, constant lr, no clipping, whole batch).
            out = os.path.join(tmp, f"{name}-pet")
            model_ref.peft_cmd("train", "--model", d, "--data", data, "--task", "pet",
                               "--pattern", PATTERNS[0], "--verbalizer", verb, "--method", "full",
                               "--out", out, "--max-steps", 5, "--batch-size", len(RECORDS),
                               "--lr", 1e-3, "--scheduler", "constant", "--clip-grad", 0,
                               "--no-shuffle", "--json")
            with open(os.path.join(out, "metrics.jsonl")) as f:
                ours = [json.loads(line)["loss"] for line in f]
            m = type(model).from_pretrained(d).float().train()
            opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.0, eps=1e-8)
            refs = []
            for _ in range(5):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(
                    class_scores(m, tok, PATTERNS[0], RECORDS, bert), targets)
                loss.backward()
                opt.step()
                refs.append(float(loss))
            worst = max(abs(a - b) / abs(b) for a, b in zip(ours, refs))
            if len(ours) != 5:
                worst = float("inf")
            report.check(f"{name} 5-step PET trajectory", worst, LOSS_REL, "loss rel error")

            if bert:
                aux_and_distillation(report, tmp, d, data, tok, targets)

            # A verbalizer word of several tokens is an error that shows its tokenisation.
            r = subprocess.run([model_ref.peft_binary(), "classify", "--model", d, "--data", data,
                                "--pattern", PATTERNS[0], "--verbalizer",
                                '{"negative": "awfulness", "positive": "good"}'],
                               capture_output=True, text=True)
            ok = r.returncode == 1 and "tokens [" in r.stderr and r.stderr.startswith("peft: error")
            if not ok:
                print(f"unexpected: rc {r.returncode}, stderr {r.stderr.strip()}")
            report.check(f"{name} multi-token verbalizer word gives the error", 0 if ok else 1, 0,
                         "missing error")

        # seq-cls: our BERT head (pooler + classifier) against BertForSequenceClassification.
        d = os.path.join(tmp, "bert")
        torch.manual_seed(5)
        cls = BertForSequenceClassification.from_pretrained(d, num_labels=2).float().eval()
        with torch.no_grad():
            cls.classifier.weight.normal_(0, 0.5)
            cls.bert.pooler.dense.weight.normal_(0, 0.2)
        cls.save_pretrained(os.path.join(tmp, "bert-cls"), safe_serialization=True)
        # Our MLM loader takes the encoder from the MLM folder and the pooler from the
        # checkpoint: write the pooler beside the MLM weights and the head as a LoRA adapter
        # whose B = 0 (identity) with modules_to_save.
        from safetensors.torch import load_file, save_file
        mlm = load_file(os.path.join(d, "model.safetensors"))
        mlm["bert.pooler.dense.weight"] = cls.bert.pooler.dense.weight.detach().clone()
        mlm["bert.pooler.dense.bias"] = cls.bert.pooler.dense.bias.detach().clone()
        save_file(mlm, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        ad = os.path.join(tmp, "cls-adapter")
        os.makedirs(ad)
        with open(os.path.join(ad, "adapter_config.json"), "w") as f:
            json.dump({"peft_type": "LORA", "r": 2, "lora_alpha": 2,
                       "target_modules": ["query"], "modules_to_save": ["classifier"],
                       "task_type": "SEQ_CLS", "id2label": {"0": "negative", "1": "positive"}}, f)
        tensors = {"base_model.model.classifier.weight": cls.classifier.weight.detach().clone(),
                   "base_model.model.classifier.bias": cls.classifier.bias.detach().clone()}
        for i in range(2):
            k = f"base_model.model.bert.encoder.layer.{i}.attention.self.query"
            tensors[k + ".lora_A.weight"] = torch.zeros(2, 32)
            tensors[k + ".lora_B.weight"] = torch.zeros(32, 2)
        save_file(tensors, os.path.join(ad, "adapter_model.safetensors"),
                  metadata={"format": "pt"})
        tok = AutoTokenizer.from_pretrained(d)
        enc = tok([r["text"] for r in RECORDS], padding=True, return_tensors="pt")
        with torch.no_grad():
            ref = float(torch.nn.functional.cross_entropy(cls(**enc).logits, targets))
        got = json.loads(model_ref.peft_cmd(
            "train", "--model", d, "--data", data, "--eval-data", data, "--task", "seq-cls",
            "--adapter", ad, "--out", os.path.join(tmp, "cls-out"), "--max-steps", 1, "--lr",
            1e-30, "--labels", "negative,positive", "--json").splitlines()[-1])
        report.check("bert seq-cls eval loss vs BertForSequenceClassification",
                     abs(got["eval_loss"] - ref) / ref, 1e-5, "loss rel error")
        with torch.no_grad():
            ref_logits = cls(**enc).logits.double()
        got = json.loads(model_ref.peft_cmd("classify", "--model", d, "--adapter", ad, "--data",
                                            data, "--json").splitlines()[-1])
        ours = torch.tensor([p["scores"] for p in got["predictions"]], dtype=torch.float64)
        report.check("bert seq-cls logits (classify --adapter) vs BertForSequenceClassification",
                     float((ours - ref_logits).abs().max()), 1e-5, "logit abs diff")

        # --method full --task seq-cls writes a folder transformers' class loads, head included.
        full = os.path.join(tmp, "cls-full")
        model_ref.peft_cmd("train", "--model", d, "--data", data, "--task", "seq-cls", "--method",
                           "full", "--out", full, "--max-steps", 1, "--labels",
                           "negative,positive")
        loaded, info = BertForSequenceClassification.from_pretrained(full,
                                                                     output_loading_info=True)
        ok = (not info["missing_keys"] and loaded.config.num_labels == 2 and
              loaded.config.id2label == {0: "negative", 1: "positive"})
        report.check("bert full seq-cls folder loads in BertForSequenceClassification",
                     0 if ok else 1, 0, "missing head or labels")

        # Qwen2: score on the last token, against Qwen2ForSequenceClassification.
        d = os.path.join(tmp, "qwen2")
        torch.manual_seed(6)
        qcls = Qwen2ForSequenceClassification.from_pretrained(d, num_labels=2).float().eval()
        with torch.no_grad():
            qcls.score.weight.normal_(0, 0.5)
        ad = os.path.join(tmp, "qwen-cls-adapter")
        os.makedirs(ad)
        with open(os.path.join(ad, "adapter_config.json"), "w") as f:
            json.dump({"peft_type": "LORA", "r": 2, "lora_alpha": 2, "target_modules": ["q_proj"],
                       "modules_to_save": ["score"], "task_type": "SEQ_CLS",
                       "id2label": {"0": "negative", "1": "positive"}}, f)
        tensors = {"base_model.model.score.weight": qcls.score.weight.detach().clone()}
        for i in range(2):
            k = f"base_model.model.model.layers.{i}.self_attn.q_proj"
            tensors[k + ".lora_A.weight"] = torch.zeros(2, 32)
            tensors[k + ".lora_B.weight"] = torch.zeros(32, 2)
        save_file(tensors, os.path.join(ad, "adapter_model.safetensors"),
                  metadata={"format": "pt"})
        qtok = AutoTokenizer.from_pretrained(d)
        with torch.no_grad():  # one record at a time: the last token is the last non-pad token
            ref_logits = torch.cat([qcls(**qtok(r["text"], return_tensors="pt")).logits
                                    for r in RECORDS]).double()
        got = json.loads(model_ref.peft_cmd("classify", "--model", d, "--adapter", ad, "--data",
                                            data, "--json").splitlines()[-1])
        ours = torch.tensor([p["scores"] for p in got["predictions"]], dtype=torch.float64)
        report.check("qwen2 seq-cls logits (last token) vs Qwen2ForSequenceClassification",
                     float((ours - ref_logits).abs().max()), 1e-5, "logit abs diff")
    report.finish()


if __name__ == "__main__":
    main()
