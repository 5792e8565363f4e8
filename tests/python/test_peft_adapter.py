#!/usr/bin/env python3
"""Bottleneck adapters against AdapterHub (`adapters` 1.3.0, pinned in tests/requirements-adapters.txt,
installed by scripts/setup-adapters-python.sh into a venv in the user cache, ~/.cache/peft.cpp: it
needs transformers 4.57 and torch >= 2.2, which the Debian-based reference environment cannot hold).

On tiny random BERT (post-LN), Llama (AdapterHub's native model), Qwen2 (AdapterHub's built-in
plugin interface) and Baichuan (tests/python/baichuan_ref.py's port wrapped as a transformers
PreTrainedModel and given to adapters.init with an AdapterModelInterface, attn_qkv_proj="W_pack":
how AdapterHub's plugin interface places adapters in a custom model), for Houlsby (double_seq_bn)
and Pfeiffer (seq_bn), each family with its own reduction factors and non-linearities (together:
rf 4, 8, 16; relu, swish, gelu, tanh):
1. an adapter AdapterHub saves (pytorch_adapter.bin, its default) loads here with the same logits
   (max |ours − theirs| / max |theirs| ≤ 1e-5) and the same gradients of the loss (1e-4 relative);
2. 5 AdamW steps from that adapter follow PyTorch's losses (1e-5 relative), and the adapter
   `peft train` then writes loads in AdapterHub (load_adapter, from pytorch_adapter.bin and from
   adapter.safetensors) with the same logits (1e-5 relative); one run per family trains an adapter
   from the CLI flags (--adapter-kind, --reduction-factor, --non-linearity, --adapter-name) and
   AdapterHub loads it the same way;
3. the mam_adapter init (zero up-projection) leaves the logits exactly unchanged;
4. a pytorch_adapter.bin whose pickle names os.system is refused with one error line, running
   nothing;
5. prediction heads: AdapterHub's adapter + classification head (Qwen2ForSequenceClassification,
   head_config.json + pytorch_model_head.bin) gives the same --task seq-cls loss here (1e-5
   relative), and the adapter + head `peft train --task seq-cls` writes loads in AdapterHub
   (load_adapter) with the same loss.
Lean by design (one tiny model per family, each peft process doing several checks): about a minute
on an idle 2-core machine once the venv exists.
"""
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def ensure_adapters_env():
    """Re-runs this script under the AdapterHub venv (scripts/setup-adapters-python.sh: in the user's
    cache, created on first use); exit 77 (skip) when it cannot be had (no network)."""
    try:
        import adapters  # noqa: F401
        import torch  # noqa: F401
        return
    except ImportError:
        pass
    req = os.path.join(ROOT, "tests", "requirements-adapters.txt")
    with open(req, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    cache = os.environ.get("PEFT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "peft.cpp")
    venv = os.path.join(cache, "venv-adapters-" + digest)
    python = os.path.join(venv, "bin", "python")
    os.makedirs(cache, exist_ok=True)
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        setup = subprocess.run([os.path.join(ROOT, "scripts", "setup-adapters-python.sh"), venv])
    probe = subprocess.run([python, "-c", "import adapters, torch, safetensors, numpy"],
                           capture_output=True) if os.path.exists(python) else None
    if setup.returncode != 0 or probe is None or probe.returncode != 0:
        print("SKIP: could not set up the AdapterHub environment (scripts/setup-adapters-python.sh)")
        sys.exit(77)
    os.execv(python, [python] + sys.argv)


ensure_adapters_env()

import adapters  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from adapters import AdapterModelInterface, DoubleSeqBnConfig, SeqBnConfig  # noqa: E402
from torch import nn  # noqa: E402
from transformers import (BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM,  # noqa: E402
                          PretrainedConfig, PreTrainedModel, Qwen2Config, Qwen2ForCausalLM)
from transformers.modeling_outputs import CausalLMOutput  # noqa: E402

sys.path.insert(0, HERE)
import baichuan_ref  # noqa: E402
import model_ref  # noqa: E402
from model_ref import peft_cmd  # noqa: E402

LOGITS_REL = 1e-5
GRAD_REL = 1e-4
STEP_LOSS_REL = 1e-5
VOCAB = 97
KINDS = {"houlsby": DoubleSeqBnConfig, "pfeiffer": SeqBnConfig}
# Per family: (kind, reduction factor, non-linearity) of each case.
CASES = {
    "bert": (("houlsby", 8, "gelu"), ("pfeiffer", 4, "tanh")),
    "llama": (("houlsby", 16, "swish"), ("pfeiffer", 8, "relu")),
    "qwen2": (("houlsby", 4, "tanh"), ("pfeiffer", 16, "gelu")),
    "baichuan": (("houlsby", 8, "relu"), ("pfeiffer", 4, "swish")),
}


# Baichuan as its remote code defines it (a PreTrainedModel), built from the port's modules, so
# that adapters.init can wrap it with the plugin interface a user of Baichuan would write.
class HubBaichuanConfig(PretrainedConfig):
    model_type = "baichuan"


class HubBaichuanModel(PreTrainedModel):
    config_class = HubBaichuanConfig

    def __init__(self, config):
        super().__init__(config)
        inner = baichuan_ref.Model(config)
        self.padding_idx, self.embed_tokens, self.layers, self.norm = (inner.padding_idx, inner.embed_tokens,
                                                                       inner.layers, inner.norm)

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, inputs_embeds=None,
                **kwargs):
        return baichuan_ref.Model.forward(self, input_ids, attention_mask, past_key_values, inputs_embeds)


class HubBaichuanForCausalLM(PreTrainedModel):
    config_class = HubBaichuanConfig
    base_model_prefix = "model"

    def __init__(self, config):
        super().__init__(config)
        self.model = HubBaichuanModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        out = baichuan_ref.BaiChuanForCausalLM.forward(self, input_ids, attention_mask, labels=labels)
        return CausalLMOutput(logits=out.logits, loss=out.loss)


BAICHUAN_INTERFACE = AdapterModelInterface(
    adapter_methods=["bottleneck"], model_embeddings="embed_tokens", model_layers="layers",
    layer_self_attn="self_attn", layer_cross_attn=None, attn_qkv_proj="W_pack", attn_o_proj="o_proj",
    layer_intermediate_proj="mlp.up_proj", layer_output_proj="mlp.down_proj",
    layer_pre_self_attn="input_layernorm", layer_pre_ffn="post_attention_layernorm", layer_ln_1=None,
    layer_ln_2=None)


def build(family, path):
    torch.manual_seed(0)
    if family == "bert":
        cfg = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=48, max_position_embeddings=32, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
        m = BertForMaskedLM(cfg)
    elif family == "llama":
        cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
        m = LlamaForCausalLM(cfg)
    elif family == "qwen2":
        cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                          tie_word_embeddings=False)
        m = Qwen2ForCausalLM(cfg)
    else:
        fields = baichuan_ref.BaichuanConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48,
                                             num_hidden_layers=2, num_attention_heads=4,
                                             max_position_embeddings=32)
        m = HubBaichuanForCausalLM(HubBaichuanConfig(**fields.__dict__))
    with torch.no_grad():  # larger than the init so that every part of the model matters
        for name, p in m.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.1)
            elif "norm" in name.lower() and name.endswith("weight"):
                p.uniform_(0.8, 1.2)
            else:
                p.normal_(0, 0.05)
    if family == "baichuan":  # the released checkpoints' config.json and tensor names
        os.makedirs(path, exist_ok=True)
        model_ref.write_config(path, fields.to_json())
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, os.path.join(path, "model.safetensors"),
                  metadata={"format": "pt"})
    else:
        m.save_pretrained(path, safe_serialization=True)
    return m


def fresh(family, path):
    if family == "baichuan":
        from safetensors.torch import load_file
        with open(os.path.join(path, "config.json")) as f:
            fields = {k: v for k, v in json.load(f).items() if k not in ("model_type", "architectures", "torch_dtype")}
        m = HubBaichuanForCausalLM(HubBaichuanConfig(**fields))
        m.load_state_dict(load_file(os.path.join(path, "model.safetensors")))
        adapters.init(m, interface=BAICHUAN_INTERFACE)
        return m.eval()
    cls = {"bert": BertForMaskedLM, "llama": LlamaForCausalLM, "qwen2": Qwen2ForCausalLM}[family]
    m = cls.from_pretrained(path, attn_implementation="eager")
    adapters.init(m)
    return m.eval()


def batch_for(seed):
    ids, mask, labels = model_ref.padded_batch(VOCAB, [9, 13, 6, 11], seed)
    # Position 0 is never a target: decoders shift it away; for BERT it makes every record's labels
    # differ from its ids, so --task mlm keeps them as given instead of masking.
    labels[:, 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def rel(a, b, mask):
    m = mask.numpy().astype(bool)
    return float(np.abs(a[m] - b[m]).max() / np.abs(b[m]).max())


def ours(model_dir, b, adapter, grads=False):
    inputs = {k: b[k] for k in ("input_ids", "attention_mask", "labels")}
    extra = ["--adapter", adapter] if adapter else []
    return model_ref.run_oracle(model_dir, inputs, grads=grads, extra_args=extra)


def adapter_params(m):
    return {n: p for n, p in m.named_parameters() if ".adapters." in n}


def hub_adapter(family, base_dir, kind, rf, act, out, init="bert", randomize=True):
    m = fresh(family, base_dir)
    m.add_adapter("a", config=KINDS[kind](reduction_factor=rf, non_linearity=act, init_weights=init))
    m.set_active_adapters("a")
    if randomize:
        with torch.no_grad():
            for p in adapter_params(m).values():
                p.normal_(0, 0.3)
    m.save_adapter(out, "a")
    return m


def heads(report, tmp):
    """5. A Pfeiffer adapter with AdapterHub's static classification head, both ways, on a tiny
    Qwen2 with a real tokenizer (seq-cls reads text)."""
    from transformers import AutoTokenizer, Qwen2ForSequenceClassification
    model_dir = os.path.join(tmp, "cls_model")
    peft_cmd("init", "--arch", "qwen2", "--preset", "tiny", "--seed", 3, "--vocab-from",
             os.path.join(ROOT, "tests", "assets", "tokenizers", "qwen2.5"), "--out", model_dir)
    records = [("the cat sat on the mat", "LABEL_0"), ("a dog ran far away", "LABEL_1"),
               ("hello world again", "LABEL_0"), ("numbers 1 2 3 go", "LABEL_1")]
    data = os.path.join(tmp, "cls.jsonl")
    with open(data, "w") as f:
        for text, label in records:
            f.write(json.dumps({"text": text, "label": label}) + "\n")
    tok = AutoTokenizer.from_pretrained(model_dir)

    def hub_model():
        torch.manual_seed(4)
        m = Qwen2ForSequenceClassification.from_pretrained(model_dir, num_labels=2, pad_token_id=0,
                                                           attn_implementation="eager")
        adapters.init(m)
        return m.eval()

    def hub_loss(m):
        losses = []
        with torch.no_grad():
            for text, label in records:
                ids = torch.tensor([tok(text)["input_ids"]])
                losses.append(float(m(input_ids=ids, labels=torch.tensor([int(label[-1])])).loss))
        return sum(losses) / len(losses)

    def our_loss(adapter, out):
        # 1 step at lr 1e-30 leaves the weights as loaded; eval_loss is the loaded model's.
        r = peft_cmd("train", "--model", model_dir, "--task", "seq-cls", "--data", data, "--eval-data", data,
                     "--adapter", adapter, "--lr", 1e-30, "--weight-decay", 0, "--max-steps", 1, "--batch-size", 4,
                     "--out", out, "--json")
        return json.loads(r.strip().splitlines()[-1])["eval_loss"]

    m = hub_model()
    m.add_adapter("a", config=SeqBnConfig(reduction_factor=8))
    m.set_active_adapters("a")
    with torch.no_grad():
        for n, p in m.named_parameters():
            if ".adapters." in n or n.startswith("score."):
                p.normal_(0, 0.3)
    hub_dir = os.path.join(tmp, "hub_head")
    m.save_adapter(hub_dir, "a")
    ok = os.path.exists(os.path.join(hub_dir, "pytorch_model_head.bin"))
    theirs = hub_loss(m)
    mine = our_loss(hub_dir, os.path.join(tmp, "head_ours_eval")) if ok else float("nan")
    report.check(f"AdapterHub's adapter + head, our seq-cls loss ({theirs:.5f})", abs(mine - theirs) / abs(theirs),
                 LOGITS_REL, "loss rel error")

    trained = os.path.join(tmp, "head_trained")
    r = peft_cmd("train", "--model", model_dir, "--task", "seq-cls", "--data", data, "--eval-data", data,
                 "--method", "adapter", "--adapter-kind", "pfeiffer", "--max-steps", 3, "--lr", 5e-2,
                 "--batch-size", 4, "--out", trained, "--json")
    mine = json.loads(r.strip().splitlines()[-1])["eval_loss"]
    h = hub_model()
    name = h.load_adapter(trained)
    h.set_active_adapters(name)
    theirs = hub_loss(h)
    report.check(f"our adapter + head in AdapterHub ({mine:.5f})", abs(mine - theirs) / abs(theirs), LOGITS_REL,
                 "loss rel error")


def main():
    report = model_ref.Report()
    with tempfile.TemporaryDirectory() as tmp:
        for family in CASES:
            base_dir = os.path.join(tmp, family)
            base = build(family, base_dir).eval()
            b = batch_for(3)
            hb = b
            mask = b["attention_mask"]
            data = os.path.join(tmp, family + ".jsonl")
            with open(data, "w") as f:
                for ids, m_, lab in zip(b["input_ids"], b["attention_mask"], b["labels"]):
                    n = int(m_.sum())
                    f.write(json.dumps({"input_ids": ids[:n].tolist(), "labels": lab[:n].tolist()}) + "\n")
            with torch.no_grad():
                plain = base(**hb).logits.numpy()

            def hub_loads(tag, our_dir):
                """Our folder in AdapterHub (both weight files) vs our logits of it."""
                ours_logits = ours(base_dir, b, our_dir)["logits"]
                for safe in (False, True):
                    h = fresh(family, base_dir)
                    name = h.load_adapter(our_dir, use_safetensors=safe)
                    h.set_active_adapters(name)
                    with torch.no_grad():
                        theirs = h(**hb).logits.numpy()
                    what = "adapter.safetensors" if safe else "pytorch_adapter.bin"
                    report.check(f"{tag}: our adapter in AdapterHub ({what})", rel(ours_logits, theirs, mask),
                                 LOGITS_REL, "logits rel error")
                return ours_logits

            for kind, rf, act in CASES[family]:
                tag = f"{family} {kind} rf={rf} {act}"
                # 1. AdapterHub -> ours (their default file, pytorch_adapter.bin).
                hub_dir = os.path.join(tmp, f"hub_{family}_{kind}")
                m = hub_adapter(family, base_dir, kind, rf, act, hub_dir)
                out = m(**hb)
                ref = out.logits.detach().numpy()
                out.loss.backward()
                mine = ours(base_dir, b, hub_dir, grads=True)
                report.check(f"{tag}: AdapterHub's adapter, our logits", rel(mine["logits"], ref, mask), LOGITS_REL,
                             "logits rel error")
                worst = 0.0
                for name, p in adapter_params(m).items():
                    g = mine.get("grad." + name)
                    worst = max(worst, float("inf") if g is None else
                                float(np.abs(g - p.grad.numpy()).max() / max(np.abs(p.grad.numpy()).max(), 1e-12)))
                report.check(f"{tag}: gradients of every adapter weight", worst, GRAD_REL, "grad rel error")
                report.check(f"{tag}: the adapter changes the logits", -rel(ref, plain, mask), -1e-3,
                             "minus rel change")

                # 2. 5 AdamW steps from that adapter, here and in PyTorch; our result in AdapterHub.
                m.zero_grad()
                for p in m.parameters():
                    p.requires_grad_(False)
                params = list(adapter_params(m).values())
                for p in params:
                    p.requires_grad_(True)
                opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
                ref_losses = []
                for _ in range(5):
                    opt.zero_grad()
                    loss = m(**hb).loss
                    loss.backward()
                    opt.step()
                    ref_losses.append(float(loss))
                steps = os.path.join(tmp, f"steps_{family}_{kind}")
                peft_cmd("train", "--model", base_dir, "--data", data, "--out", steps, "--adapter", hub_dir,
                         "--max-steps", 5, "--batch-size", 4, "--no-shuffle", "--lr", 1e-2, "--scheduler",
                         "constant", "--clip-grad", 0, "--weight-decay", 0.01)
                with open(os.path.join(steps, "metrics.jsonl")) as f:
                    got = [json.loads(line)["loss"] for line in f if "loss" in json.loads(line)]
                worst = max(abs(a - r) / abs(r) for a, r in zip(got, ref_losses)) if len(got) == 5 else float("inf")
                report.check(f"{tag}: 5 AdamW steps (torch {ref_losses[0]:.4f} -> {ref_losses[-1]:.4f})",
                             worst, STEP_LOSS_REL, "step loss rel error")
                trained = hub_loads(tag + " after 5 steps", steps)
                report.check(f"{tag}: the 5 steps change the logits", -rel(trained, ref, mask), -1e-5,
                             "minus rel change")

            # 2b. an adapter made from the CLI flags (the family's first case, another name).
            kind, rf, act = CASES[family][0]
            our_dir = os.path.join(tmp, f"flags_{family}")
            peft_cmd("train", "--model", base_dir, "--data", data, "--out", our_dir, "--method", "adapter",
                     "--adapter-kind", kind, "--reduction-factor", rf, "--non-linearity", act,
                     "--adapter-name", "mine", "--max-steps", 2, "--lr", 5e-2, "--batch-size", 4)
            flags_logits = hub_loads(f"{family} {kind} from the CLI flags", our_dir)
            report.check(f"{family}: our trained adapter changes the logits", -rel(flags_logits, plain, mask),
                         -1e-4, "minus rel change")

            # 3. identity init (one family: the C++ tests cover the rest).
            if family == "qwen2":
                ident = os.path.join(tmp, f"ident_{family}")
                hub_adapter(family, base_dir, "pfeiffer", 8, "relu", ident, init="mam_adapter", randomize=False)
                with_adapter = ours(base_dir, b, ident)["logits"]
                without = ours(base_dir, b, None)["logits"]
                report.check(f"{family}: mam_adapter init leaves the logits unchanged",
                             float(np.abs(with_adapter - without).max()), 0.0, "max abs change")

        heads(report, tmp)

        # 4. a hostile pickle.
        evil = os.path.join(tmp, "evil")
        os.makedirs(evil)
        marker = os.path.join(tmp, "pwned")

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        good = os.path.join(tmp, "hub_llama_pfeiffer")
        with open(os.path.join(good, "adapter_config.json")) as f:
            cfg = f.read()
        with open(os.path.join(evil, "adapter_config.json"), "w") as f:
            f.write(cfg)
        torch.save({"x": Evil()}, os.path.join(evil, "pytorch_adapter.bin"))
        with zipfile.ZipFile(os.path.join(evil, "pytorch_adapter.bin")) as z:
            assert any(n.endswith("data.pkl") for n in z.namelist())
        inputs = os.path.join(tmp, "evil_inputs.safetensors")
        from safetensors.numpy import save_file
        save_file({"input_ids": np.asarray([[1, 2, 3]], dtype=np.int32)}, inputs)
        r = subprocess.run([model_ref.peft_binary(), "model-oracle", "--model", os.path.join(tmp, "llama"),
                            "--inputs", inputs, "--out", os.path.join(tmp, "evil_out.safetensors"),
                            "--adapter", evil], capture_output=True, text=True)
        lines = r.stderr.strip().splitlines()
        ok = r.returncode == 1 and len(lines) == 1 and "refusing" in lines[0] and "os" in lines[0] \
            and not os.path.exists(marker)
        print(f"  hostile pickle: rc={r.returncode} stderr={r.stderr.strip()!r}")
        report.check("hostile pickle refused, nothing run", 0.0 if ok else 1.0, 0.0, "failure")
    report.finish()


if __name__ == "__main__":
    sys.exit(main())
