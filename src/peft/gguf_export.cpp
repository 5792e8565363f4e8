#include "peft/gguf_export.h"

#include <sentencepiece_processor.h>

#include <cmath>
#include <map>
#include <set>

#include "io/files.h"
#include "io/gguf.h"
#include "models/registry.h"
#include "peft/lora.h"
#include "tokenizer/tokenizer.h"

namespace peft {

namespace {

// One row per model_type llama.cpp runs: its GGUF architecture name, and whether its Q / K rows
// are permuted (RoPE on interleaved pairs in llama.cpp, on half-heads in transformers).
struct GGUFArch {
  const char* model_type;
  const char* arch;
  bool permute_qk;
};
constexpr GGUFArch kArchs[] = {
    {"qwen2", "qwen2", false},
    {"llama", "llama", true},
    {"baichuan", "baichuan", true},
};

const GGUFArch& gguf_arch(const Model& model) {
  for (const GGUFArch& a : kArchs)
    if (model.config().model_type == a.model_type) return a;
  fail("GGUF export: model_type \"{}\" has no llama.cpp architecture here (qwen2, llama, baichuan)",
       model.config().model_type);
}

// A GGUF tensor cut from an HF weight: rows [row0, row0 + rows) (all when rows = 0), with the
// RoPE permutation over `heads` heads when heads > 0.
struct Piece {
  std::string gguf_name;
  int64_t row0 = 0, rows = 0;
  int64_t heads = 0;
};

// The GGUF tensors of an HF weight name (more than one for Baichuan's W_pack). Error for a
// weight llama.cpp has no place for.
std::vector<Piece> pieces_of(const std::string& hf, const HFConfig& c, bool permute_qk) {
  if (hf == "model.embed_tokens.weight") return {{"token_embd.weight"}};
  if (hf == "model.norm.weight") return {{"output_norm.weight"}};
  if (hf == "lm_head.weight") return {{"output.weight"}};
  static const std::map<std::string, std::string> layer_names = {
      {"input_layernorm", "attn_norm"}, {"post_attention_layernorm", "ffn_norm"},
      {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},   {"self_attn.o_proj", "attn_output"},
      {"mlp.gate_proj", "ffn_gate"},    {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"},    {"self_attn.W_pack", ""},
  };
  const std::string prefix = "model.layers.";
  if (hf.rfind(prefix, 0) == 0) {
    const size_t dot = hf.find('.', prefix.size());
    const size_t last = hf.rfind('.');
    if (dot != std::string::npos && last > dot) {
      const std::string layer = hf.substr(prefix.size(), dot - prefix.size());
      const std::string module = hf.substr(dot + 1, last - dot - 1);
      const std::string kind = hf.substr(last + 1);  // weight / bias
      auto it = layer_names.find(module);
      if (it != layer_names.end()) {
        const std::string blk = "blk." + layer + ".";
        const int64_t D = c.head_dim, H = c.num_attention_heads, Hkv = c.num_key_value_heads;
        const int64_t pq = permute_qk ? H : 0, pk = permute_qk ? Hkv : 0;
        if (module == "self_attn.W_pack")  // rows [Wq; Wk; Wv], Baichuan-7B (no GQA)
          return {{blk + "attn_q." + kind, 0, H * D, pq},
                  {blk + "attn_k." + kind, H * D, Hkv * D, pk},
                  {blk + "attn_v." + kind, H * D + Hkv * D, Hkv * D, 0}};
        Piece p{blk + it->second + "." + kind};
        if (module == "self_attn.q_proj") p.heads = pq;
        if (module == "self_attn.k_proj") p.heads = pk;
        return {p};
      }
    }
  }
  fail("GGUF export: weight {} has no llama.cpp tensor", hf);
}

// Rows [row0, row0 + rows) of x [R, ...] (f32), permuted per head for llama.cpp's RoPE: GGUF row
// h·D + 2i + j = HF row h·D + j·D/2 + i.
Tensor cut(const Tensor& x, const Piece& p) {
  const int64_t R = x.dim(0), cols = x.numel() / R;
  const int64_t row0 = p.row0, rows = p.rows > 0 ? p.rows : R;
  Shape shape = x.shape();
  shape[0] = rows;
  Tensor out = Tensor::zeros(shape, DType::F32);
  const float* src = x.data<float>() + row0 * cols;
  float* dst = out.data<float>();
  const int64_t D = p.heads > 0 ? rows / p.heads : 0;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t from = r;
    if (p.heads > 0) {
      const int64_t h = r / D, within = r % D, i = within / 2, j = within % 2;
      from = h * D + j * (D / 2) + i;
    }
    std::copy(src + from * cols, src + (from + 1) * cols, dst + r * cols);
  }
  return out;
}

// llama.cpp's token types.
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUnused = 5, kByte = 6 };

// tokenizer.ggml.* from the model folder's tokenizer: "gpt2" (byte-level BPE, tokenizer.json),
// "llama" (SentencePiece, tokenizer.model), or "no_vocab". The token list is padded to the model's
// vocab_size with unused "[PAD{i}]" tokens, as llama.cpp's converter does.
void add_tokenizer(GGUFWriter& w, const Model& model, const std::string& dir) {
  const HFConfig& c = model.config();
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<float> scores;
  std::unique_ptr<Tokenizer> tok;
  const bool has_json = file_exists(join_path(dir, "tokenizer.json"));
  const bool has_spm = file_exists(join_path(dir, "tokenizer.model"));
  if (has_json || has_spm || file_exists(join_path(dir, "vocab.json"))) tok = load_tokenizer(dir);
  if (tok && tok->kind() == "bpe") {
    nlohmann::json j;
    std::vector<std::string> merges;
    if (has_json) {
      j = read_json_file(join_path(dir, "tokenizer.json"));
      for (const auto& m : j["model"].value("merges", nlohmann::json::array()))
        merges.push_back(m.is_string()
                             ? m.get<std::string>()
                             : m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
    } else {
      const std::string text = read_text_file(join_path(dir, "merges.txt"));
      size_t pos = 0;
      while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(pos, end - pos);
        if (!line.empty() && line.rfind("#version", 0) != 0) merges.push_back(line);
        pos = end + 1;
      }
    }
    for (int32_t i = 0; i < tok->vocab_size(); ++i) {
      tokens.push_back(tok->id_to_token(i));
      types.push_back(tokens.back().empty() ? kUnused : tok->is_special(i) ? kControl : kNormal);
      if (tokens.back().empty()) tokens.back() = "[PAD" + std::to_string(i) + "]";
    }
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", c.model_type == "qwen2" ? "qwen2" : "default");
    for (int64_t i = int64_t(tokens.size()); i < c.vocab_size; ++i) {
      tokens.push_back("[PAD" + std::to_string(i) + "]");
      types.push_back(kUnused);
    }
    w.set_strings("tokenizer.ggml.tokens", tokens);
    w.set_i32s("tokenizer.ggml.token_type", types);
    w.set_strings("tokenizer.ggml.merges", merges);
  } else if (tok && tok->kind() == "sentencepiece") {
    sentencepiece::SentencePieceProcessor sp;
    if (!sp.Load(join_path(dir, "tokenizer.model")).ok())
      fail("{}: cannot read tokenizer.model", dir);
    for (int i = 0; i < sp.GetPieceSize(); ++i) {
      tokens.push_back(sp.IdToPiece(i));
      scores.push_back(sp.GetScore(i));
      types.push_back(sp.IsUnknown(i)   ? kUnknown
                      : sp.IsControl(i) ? kControl
                      : sp.IsUnused(i)  ? kUnused
                      : sp.IsByte(i)    ? kByte
                                        : kNormal);
    }
    for (int32_t i = int32_t(tokens.size()); i < tok->vocab_size(); ++i) {  // added tokens
      tokens.push_back(tok->id_to_token(i));
      scores.push_back(-1000.0f);
      types.push_back(kControl);
    }
    for (int64_t i = int64_t(tokens.size()); i < c.vocab_size; ++i) {
      tokens.push_back("[PAD" + std::to_string(i) + "]");
      scores.push_back(-1000.0f);
      types.push_back(kUnused);
    }
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_string("tokenizer.ggml.pre", "default");
    w.set_strings("tokenizer.ggml.tokens", tokens);
    w.set_f32s("tokenizer.ggml.scores", scores);
    w.set_i32s("tokenizer.ggml.token_type", types);
  } else {
    if (tok) fail("{}: a {} tokenizer cannot be exported to GGUF", dir, tok->kind());
    w.set_string("tokenizer.ggml.model", "no_vocab");
    return;
  }
  if (int64_t(tokens.size()) > c.vocab_size)
    fail("{}: the tokenizer has {} tokens, more than the model's vocab_size {}", dir, tokens.size(),
         c.vocab_size);
  const int32_t bos = tok->bos_id() >= 0 ? tok->bos_id() : int32_t(c.bos_token_id);
  const int32_t eos = tok->eos_id() >= 0
                          ? tok->eos_id()
                          : (c.eos_token_ids.empty() ? -1 : int32_t(c.eos_token_ids.front()));
  if (bos >= 0) w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(bos));
  if (eos >= 0) w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(eos));
  if (tok->pad_id() >= 0) w.set_u32("tokenizer.ggml.padding_token_id", uint32_t(tok->pad_id()));
  if (tok->unk_id() >= 0) w.set_u32("tokenizer.ggml.unknown_token_id", uint32_t(tok->unk_id()));
  // Whether encoding adds BOS, as the HF tokenizer does.
  const std::vector<int32_t> probe = tok->encode("a", true);
  w.set_bool("tokenizer.ggml.add_bos_token", !probe.empty() && bos >= 0 && probe.front() == bos);
  const std::string config_path = join_path(dir, "tokenizer_config.json");
  if (file_exists(config_path)) {
    const nlohmann::json tc = read_json_file(config_path);
    if (tc.contains("chat_template") && tc["chat_template"].is_string())
      w.set_string("tokenizer.chat_template", tc["chat_template"].get<std::string>());
  }
}

void add_general(GGUFWriter& w, const Model& model, const GGUFArch& a, const std::string& type) {
  w.set_string("general.architecture", a.arch);
  w.set_string("general.type", type);
  w.set_u32("general.alignment", uint32_t(kGGUFAlignment));
  (void)model;
}

// ggml's file type code of the matrices' dtype (LLAMA_FTYPE_*).
uint32_t file_type(DType t) {
  switch (t) {
    case DType::F32:
      return 0;
    case DType::Q8_0:
      return 7;
    case DType::BF16:
      return 32;
    default:
      fail("GGUF export: --dtype {} is not supported (f32, bf16 or q8_0)", dtype_name(t));
  }
}

}  // namespace

int export_gguf_model(const Model& model, const std::string& model_dir, const MethodSet* merge,
                      DType dtype, const std::string& path) {
  const GGUFArch& a = gguf_arch(model);
  const HFConfig& c = model.config();
  if (merge)
    for (const auto& m : merge->methods())
      if (!m->mergeable())
        fail("a {} adapter cannot be folded into the weights (only LoRA merges)",
             m->config_json().value("peft_type", std::string("?")));
  GGUFWriter w;
  add_general(w, model, a, "model");
  w.set_string("general.name", c.model_type);
  w.set_u32("general.file_type", file_type(dtype));
  const std::string k = a.arch;
  w.set_u32(k + ".vocab_size", uint32_t(c.vocab_size));
  w.set_u32(k + ".context_length", uint32_t(c.max_position_embeddings));
  w.set_u32(k + ".embedding_length", uint32_t(c.hidden_size));
  w.set_u32(k + ".block_count", uint32_t(c.num_hidden_layers));
  w.set_u32(k + ".feed_forward_length", uint32_t(c.intermediate_size));
  w.set_u32(k + ".attention.head_count", uint32_t(c.num_attention_heads));
  w.set_u32(k + ".attention.head_count_kv", uint32_t(c.num_key_value_heads));
  w.set_u32(k + ".attention.key_length", uint32_t(c.head_dim));
  w.set_u32(k + ".attention.value_length", uint32_t(c.head_dim));
  w.set_u32(k + ".rope.dimension_count", uint32_t(c.head_dim));
  w.set_f32(k + ".rope.freq_base", float(c.rope_theta));
  w.set_f32(k + ".attention.layer_norm_rms_epsilon", float(c.rms_norm_eps));
  add_tokenizer(w, model, model_dir);

  int merged = 0;
  for (const auto& [name, var] : model.weights()) {
    bool merges = false;
    if (merge)
      for (const auto& m : merge->methods()) merges = merges || m->merges(name);
    merged += merges ? 1 : 0;
    const Tensor stored = var->value;
    for (const Piece& p : pieces_of(name, c, a.permute_qk)) {
      Shape shape = stored.shape();
      if (p.rows > 0) shape[0] = p.rows;
      DType t = shape.size() == 1 ? DType::F32 : dtype;
      if (dtype_is_quantized(t) && shape.back() % kQuantBlock != 0) t = DType::F32;
      w.add_tensor({p.gguf_name, t, shape, [&, name = name, stored, p, t, merges]() {
                      Tensor f = stored.to(DType::F32);
                      if (merges)
                        for (const auto& m : merge->methods()) m->merge_into(name, f);
                      Tensor out = cut(f, p);
                      return t == DType::F32 ? out : out.to(t);
                    }});
    }
  }
  w.write(path);
  return merged;
}

int export_gguf_lora(const Model& model, const MethodSet& methods, DType dtype,
                     const std::string& path) {
  const GGUFArch& a = gguf_arch(model);
  if (dtype != DType::F32 && dtype != DType::BF16)
    fail("GGUF adapter export: --dtype {} is not supported for adapters (f32 or bf16)",
         dtype_name(dtype));
  if (methods.methods().empty()) fail("GGUF adapter export: no adapter is attached");
  // llama.cpp has one alpha per file and scales each pair by alpha / r: the first method's
  // lora_alpha is written, and every pair whose PEFT scale s differs has B scaled by s·r / alpha.
  float alpha = 0;
  std::set<std::string> seen;
  GGUFWriter w;
  add_general(w, model, a, "adapter");
  w.set_string("adapter.type", "lora");
  int pairs = 0;
  struct Pair {
    std::string gguf_a, gguf_b;
    Tensor A, B;
  };
  std::vector<Pair> out;
  for (const auto& m : methods.methods()) {
    const auto* lora = dynamic_cast<const LoraMethod*>(m.get());
    if (!lora)
      fail(
          "a {} adapter has no llama.cpp adapter form (only LoRA exports; prompt-learning methods "
          "change the input, not the weights)",
          m->config_json().value("peft_type", std::string("?")));
    const LoraConfig& cfg = lora->config();
    if (cfg.bias != "none")
      fail(
          "a LoRA adapter with bias \"{}\" trains base-model biases, which llama.cpp adapters "
          "cannot hold: export the merged model instead (peft export --merge)",
          cfg.bias);
    if (alpha == 0) alpha = cfg.lora_alpha;
    for (const LinearSite& site : lora->targeted_sites()) {
      const std::string weight = site.module + ".weight";
      if (!seen.insert(weight).second)
        fail(
            "GGUF adapter export: two stacked adapters both adapt {}; llama.cpp takes one pair "
            "per weight per file",
            weight);
      const Tensor& A = methods.params().get(lora->group() + lora_key(site.module, 'A'))->value;
      const Tensor& B = methods.params().get(lora->group() + lora_key(site.module, 'B'))->value;
      const int r = int(A.dim(0));
      const float s = lora_scale(cfg, r, lora_alpha_for(cfg, site.module));
      const float fold = s * float(r) / alpha;
      for (const Piece& p : pieces_of(weight, model.config(), a.permute_qk)) {
        Tensor b = cut(B, p);
        if (fold != 1.0f)
          for (int64_t i = 0; i < b.numel(); ++i) b.data<float>()[i] *= fold;
        const std::string base = p.gguf_name;  // e.g. blk.0.attn_q.weight
        out.push_back({base + ".lora_a", base + ".lora_b", A, std::move(b)});
      }
      ++pairs;
    }
  }
  w.set_f32("adapter.lora.alpha", alpha);
  for (const Pair& p : out) {
    w.add_tensor({p.gguf_a, dtype, p.A.shape(),
                  [t = p.A, dtype]() { return dtype == DType::F32 ? t.clone() : t.to(dtype); }});
    w.add_tensor({p.gguf_b, dtype, p.B.shape(),
                  [t = p.B, dtype]() { return dtype == DType::F32 ? t.clone() : t.to(dtype); }});
  }
  w.write(path);
  return pairs;
}

}  // namespace peft
