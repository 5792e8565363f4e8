"""A PyTorch port of Baichuan-7B's modelling file (baichuan-inc/Baichuan-7B, modeling_baichuan.py,
remote code that transformers does not ship), written for the reference tests: the same module
tree and parameter names as the released checkpoints, the same arithmetic.

  - W_pack: one Linear(hidden, 3·hidden, bias=False) whose output is split into q, k, v
    (rows [Wq; Wk; Wv] of the weight), multi-head attention (no GQA);
  - rotary embeddings with base 10000 in the rotate_half convention, cos/sin cached per position;
  - RMSNorm (variance in float32), SwiGLU MLP (gate_proj, up_proj, down_proj, no biases);
  - additive causal + padding mask at finfo.min, clamped with torch.max as the original does;
  - untied lm_head, next-token loss with CrossEntropyLoss (mean over labels != -100);
  - the original's inputs_embeds and past_key_values (legacy tuples of [bsz, heads, P, head_dim]
    keys and values per layer): new tokens take positions P ... P+T-1, only their keys are
    rotated, the causal mask gets P open columns in front and the attention mask covers P + T,
    which is what Hugging Face PEFT's prompt learning feeds a causal LM (PeftModelForCausalLM).
"""
import math

import torch
from torch import nn
from torch.nn import functional as F


class BaichuanConfig:
    """The fields of Baichuan-7B's configuration_baichuan.py (BaiChuanConfig) with its defaults."""

    model_type = "baichuan"

    def __init__(self, vocab_size=64000, hidden_size=4096, intermediate_size=11008,
                 num_hidden_layers=32, num_attention_heads=32, hidden_act="silu",
                 max_position_embeddings=4096, initializer_range=0.02, rms_norm_eps=1e-6,
                 pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.tie_word_embeddings = tie_word_embeddings

    def to_dict(self):
        return dict(self.__dict__)

    def to_json(self):
        d = dict(self.__dict__)
        d.update(model_type="baichuan", architectures=["BaiChuanForCausalLM"],
                 torch_dtype="float32")
        return d


class RMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        if self.weight.dtype in [torch.float16, torch.bfloat16]:
            hidden_states = hidden_states.to(self.weight.dtype)
        return self.weight * hidden_states


class RotaryEmbedding(nn.Module):
    def __init__(self, dim, max_position_embeddings=2048, base=10000):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("inv_freq", inv_freq)
        t = torch.arange(max_position_embeddings, dtype=inv_freq.dtype)
        freqs = torch.einsum("i,j->ij", t, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos()[None, None, :, :], persistent=False)
        self.register_buffer("sin_cached", emb.sin()[None, None, :, :], persistent=False)

    def forward(self, x, seq_len):
        return (self.cos_cached[:, :, :seq_len, ...].to(dtype=x.dtype),
                self.sin_cached[:, :, :seq_len, ...].to(dtype=x.dtype))


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, position_ids):
    cos = cos.squeeze(1).squeeze(0)[position_ids].unsqueeze(1)  # [bs, 1, seq_len, dim]
    sin = sin.squeeze(1).squeeze(0)[position_ids].unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


class MLP(nn.Module):
    def __init__(self, hidden_size, intermediate_size):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.hidden_size // self.num_heads
        if self.head_dim * self.num_heads != self.hidden_size:
            raise ValueError("hidden_size must be divisible by num_heads")
        self.W_pack = nn.Linear(self.hidden_size, 3 * self.hidden_size, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, self.hidden_size, bias=False)
        self.rotary_emb = RotaryEmbedding(self.head_dim, config.max_position_embeddings)

    def forward(self, hidden_states, attention_mask, position_ids, past_key_value=None):
        bsz, q_len, _ = hidden_states.size()
        proj = self.W_pack(hidden_states)
        proj = proj.unflatten(-1, (3, self.hidden_size)).unsqueeze(0).transpose(0, -2).squeeze(-2)
        query_states = proj[0].view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        key_states = proj[1].view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        value_states = proj[2].view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        kv_seq_len = key_states.shape[-2]
        if past_key_value is not None:
            kv_seq_len += past_key_value[0].shape[-2]
        cos, sin = self.rotary_emb(value_states, seq_len=kv_seq_len)
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin,
                                                        position_ids)
        if past_key_value is not None:
            key_states = torch.cat([past_key_value[0], key_states], dim=2)
            value_states = torch.cat([past_key_value[1], value_states], dim=2)
        attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) / math.sqrt(
            self.head_dim)
        if attention_mask is not None:
            attn_weights = attn_weights + attention_mask
            attn_weights = torch.max(attn_weights,
                                     torch.tensor(torch.finfo(attn_weights.dtype).min))
        attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)
        attn_output = torch.matmul(attn_weights, value_states)
        attn_output = attn_output.transpose(1, 2).reshape(bsz, q_len, self.hidden_size)
        return self.o_proj(attn_output)


class DecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self_attn = Attention(config)
        self.mlp = MLP(config.hidden_size, config.intermediate_size)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, attention_mask, position_ids, past_key_value=None):
        residual = hidden_states
        hidden_states = self.self_attn(self.input_layernorm(hidden_states), attention_mask,
                                       position_ids, past_key_value)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.mlp(self.post_attention_layernorm(hidden_states))
        return residual + hidden_states


def _prepare_decoder_attention_mask(attention_mask, shape, dtype, past_key_values_length=0):
    """Causal mask plus padding mask, additive, finfo.min where not allowed:
    [bsz, 1, T, past + T] (the past columns open to every query)."""
    bsz, tgt_len = shape
    min_value = torch.finfo(dtype).min
    causal = torch.full((tgt_len, tgt_len), min_value)
    cond = torch.arange(tgt_len)
    causal.masked_fill_(cond < (cond + 1).view(tgt_len, 1), 0)
    causal = causal.to(dtype)
    if past_key_values_length > 0:
        causal = torch.cat([torch.zeros(tgt_len, past_key_values_length, dtype=dtype), causal],
                           dim=-1)
    src_len = tgt_len + past_key_values_length
    combined = causal[None, None, :, :].expand(bsz, 1, tgt_len, src_len)
    if attention_mask is not None:
        expanded = attention_mask[:, None, None, :].expand(bsz, 1, tgt_len, src_len).to(dtype)
        inverted = 1.0 - expanded
        padding = inverted.masked_fill(inverted.to(torch.bool), min_value)
        combined = padding + combined
    return combined


class Model(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([DecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None,
                inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        bsz, seq_len = inputs_embeds.shape[:2]
        past = past_key_values[0][0].shape[2] if past_key_values is not None else 0
        position_ids = torch.arange(past, seq_len + past, dtype=torch.long).unsqueeze(0).view(
            -1, seq_len)
        hidden_states = inputs_embeds
        mask = _prepare_decoder_attention_mask(
            attention_mask if attention_mask is not None else torch.ones(bsz, seq_len + past),
            (bsz, seq_len), hidden_states.dtype, past)
        for i, layer in enumerate(self.layers):
            hidden_states = layer(hidden_states, mask, position_ids,
                                  past_key_values[i] if past_key_values is not None else None)
        return self.norm(hidden_states)


class Output:
    def __init__(self, logits, loss):
        self.logits, self.loss = logits, loss


class BaiChuanForCausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    # What transformers' PreTrainedModel (the original's base class) offers and PEFT reads.
    @property
    def device(self):
        return next(self.parameters()).device

    @property
    def dtype(self):
        return next(self.parameters()).dtype

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def forward(self, input_ids=None, attention_mask=None, labels=None, past_key_values=None,
                inputs_embeds=None, **unused):
        """The original's arguments (PEFT passes them by name; the first three keep this port's
        positions, which other tests call it by); use_cache / output_* / return_dict change
        nothing here."""
        extra = {}
        if past_key_values is not None:
            extra["past_key_values"] = past_key_values
        if inputs_embeds is not None:
            extra["inputs_embeds"] = inputs_embeds
        logits = self.lm_head(self.model(input_ids, attention_mask, **extra))
        loss = None
        if labels is not None:
            shift_logits = logits[..., :-1, :].contiguous().view(-1, self.config.vocab_size)
            shift_labels = labels[..., 1:].contiguous().view(-1)
            loss = nn.CrossEntropyLoss()(shift_logits, shift_labels)
        return Output(logits, loss)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None,
                                      inputs_embeds=None, **kwargs):
        """What PeftModelForCausalLM keeps a handle on (generation is not used by the tests)."""
        if past_key_values:
            input_ids = input_ids[:, -1:]
        if inputs_embeds is not None and past_key_values is None:
            return {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
        return {"input_ids": input_ids, "past_key_values": past_key_values,
                "attention_mask": attention_mask}
