#include "models/model.h"

#include <algorithm>
#include <set>

#include "core/finite.h"
#include "io/files.h"
#include "io/safetensors.h"
#include "models/memory.h"
#include "models/registry.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/linear.h"

namespace peft {
namespace {

// dst = src converted a block of rows at a time (never the whole tensor in f32 at once). Each
// block of a mapped source is released once converted, so converting an f32 file to bf16 peaks
// near the bf16 size rather than f32 + bf16 (the mapped pages would otherwise stay resident).
Tensor convert_rows(const Tensor& src, DType dst_type) {
  Tensor out = Tensor::zeros(src.shape(), dst_type);
  const int64_t rows = src.rows(), cols = src.row_numel();
  const size_t src_row = dtype_bytes(src.dtype(), cols), dst_row = dtype_bytes(dst_type, cols);
  const char* s = static_cast<const char*>(src.raw());
  char* d = static_cast<char*>(out.raw());
  constexpr size_t kBlockBytes = size_t(32) << 20;
  const int64_t block = std::max<int64_t>(1, int64_t(kBlockBytes / std::max<size_t>(src_row, 1)));
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t r1 = std::min(rows, r0 + block);
#pragma omp parallel if ((r1 - r0) * cols > (int64_t(1) << 16))
    {
      std::vector<float> buf(static_cast<size_t>(cols));
#pragma omp for schedule(static)
      for (int64_t r = r0; r < r1; ++r) {
        convert_to_f32(src.dtype(), s + size_t(r) * src_row, buf.data(), cols);
        convert_from_f32(dst_type, buf.data(), d + size_t(r) * dst_row, cols);
      }
    }
    src.release_pages(size_t(r0) * src_row, size_t(r1 - r0) * src_row);
  }
  return out;
}

// The dtype a stored weight is used in, per LoadOptions.
DType target_dtype(const Tensor& t, const LoadOptions& opts) {
  if (t.ndim() != 2) return DType::F32;  // norm weights and biases: always f32 (small)
  if (!opts.base_dtype) return t.dtype();
  const DType want = *opts.base_dtype;
  if (dtype_is_quantized(want) && t.dim(1) % kQuantBlock != 0) return t.dtype();
  return want;
}

// A transformers *ForSequenceClassification checkpoint: its head (classifier / score, BERT's
// pooler) is the seq-cls objective's to read (objectives/seq_cls.cpp), and it has no LM head.
bool is_head_tensor(const std::string& stored) {
  return stored.starts_with("classifier.") || stored.starts_with("score.");
}
bool is_lm_head_tensor(const std::string& name) {
  return name.starts_with("cls.predictions.") || name == "lm_head.weight";
}

}  // namespace

bool is_seq_cls_config(const HFConfig& config) {
  for (const std::string& a : config.architectures)
    if (a.ends_with("ForSequenceClassification")) return true;
  return false;
}

bool Model::is_causal_lm() const {
  return arch_->causal_lm;
}

Var& Model::weight(const std::string& name) {
  return weights_[name];
}

Var Model::take_weight(std::map<std::string, Tensor>& tensors, const std::string& name) {
  auto it = tensors.find(name);
  PEFT_CHECK(it != tensors.end(), "{} weight {} not loaded", config_.model_type, name);
  Var v = constant(it->second, name);
  weight(name) = v;
  return v;
}

LinearWeights Model::take_linear(std::map<std::string, Tensor>& tensors, const LinearSite& site,
                                 bool has_bias) {
  return {site, take_weight(tensors, site.module + ".weight"),
          has_bias ? take_weight(tensors, site.module + ".bias") : nullptr};
}

// llama.cpp's build_lora_mm: the first branch is fused into the linear op, every further one
// (stacked adapters) adds s · B(A(dropout(x))) beside it.
Var Model::project(const Var& x, const LinearWeights& w, ModelHooks* hooks) {
  if (!hooks) return linear(x, w.weight, w.bias);
  std::vector<const LoraBranch*> branches;
  hooks->linear_branches(w.site, branches);
  Var y = linear(x, w.weight, w.bias, branches.empty() ? nullptr : branches[0]);
  for (size_t i = 1; i < branches.size(); ++i) {
    const LoraBranch& b = *branches[i];
    Var in = x;
    if (b.dropout > 0.0f) {  // the method sets it only while training
      PEFT_CHECK(b.rng != nullptr, "LoRA dropout while training needs an Rng");
      in = dropout(x, b.dropout, *b.rng);
    }
    y = add(y, scale(linear(linear(in, b.A), b.B), b.scale));
  }
  return y;
}

Var Model::forward(const ModelInputs& in, const ForwardContext& ctx) {
  const Tensor& ids = in.input_ids;
  PEFT_CHECK(ids.ndim() == 2 && ids.dtype() == DType::I32, "input_ids must be i32 [B, T], got {}",
             ids.describe());
  ctx_ = ctx;
  ctx_.batch = ids.dim(0);
  if (ctx_.hooks) ctx_.hooks->begin_forward(ctx_);
  return run_forward(in, ctx_);
}

Var Model::training_dropout(const Var& x, float p, const ForwardContext& ctx) {
  if (!ctx.training || p <= 0.0f) return x;
  PEFT_CHECK(ctx.dropout_rng != nullptr, "training with dropout needs a dropout Rng");
  return dropout(x, p, *ctx.dropout_rng);
}

Tensor Model::token_positions(const ModelInputs& in, int64_t P, int64_t offset) {
  const int64_t B = in.input_ids.dim(0), T = in.input_ids.dim(1);
  const bool given = in.position_ids.defined();
  if (given)
    PEFT_CHECK(in.position_ids.dtype() == DType::I32 && in.position_ids.ndim() == 2 &&
                   in.position_ids.dim(0) == B && in.position_ids.dim(1) == T,
               "position_ids must be i32 [{}, {}], got {}", B, T, in.position_ids.describe());
  Tensor out = Tensor::zeros({B, P + T}, DType::I32);
  int32_t* pos = out.data<int32_t>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < P + T; ++t)
      pos[b * (P + T) + t] = int32_t(
          offset + (t < P || !given ? t : P + in.position_ids.data<int32_t>()[b * T + t - P]));
  return out;
}

Tensor Model::token_segments(const ModelInputs& in, int64_t P) {
  if (!in.segment_ids.defined()) return Tensor();
  const Tensor& s = in.segment_ids;
  PEFT_CHECK(s.dtype() == DType::I32 && s.ndim() == 2 && s.dim(0) == in.input_ids.dim(0) &&
                 s.dim(1) == in.input_ids.dim(1),
             "segment_ids must be i32 shaped like input_ids {}, got {}", in.input_ids.describe(),
             s.describe());
  if (P > 0) fail("packed rows (segment_ids) cannot take {} virtual tokens in front", P);
  return s;
}

std::vector<LinearSite> Model::linear_sites() const {
  std::vector<LinearSite> out;
  for (const LinearWeights* w : sites_) out.push_back(w->site);
  return out;
}

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const auto& [name, v] : weights_) n += v->value.numel();
  return n;
}

void Model::make_trainable(ParamStore& params) {
  std::map<std::string, std::string> keys;
  for (const auto& [name, v] : weights_) keys[name] = name;
  declare_trainable(params, keys);
  params.allocate();
  bind_trainable(params, keys);
}

void Model::declare_trainable(ParamStore& params,
                              const std::map<std::string, std::string>& keys) const {
  for (const auto& [name, key] : keys) {
    auto it = weights_.find(name);
    PEFT_CHECK(it != weights_.end(), "no weight {} to train", name);
    params.declare(key, it->second->value.shape());
  }
}

void Model::bind_trainable(ParamStore& params, const std::map<std::string, std::string>& keys) {
  for (const auto& [name, key] : keys) {
    const Var& v = weights_.at(name);
    const Var& p = params.get(key);
    convert_to_f32(v->value.dtype(), v->value.raw(), p->value.data<float>(), v->value.numel());
    // Mutate the node in place so every holder of this Var (layers, tied head) sees it.
    v->value = p->value;
    v->grad = p->grad;
    v->requires_grad = true;
  }
}

Var Model::token_logits(const Var& hidden, const std::vector<int32_t>& rows,
                        const std::vector<int32_t>& vocab) {
  Var h = head_transform(gather_rows(hidden, rows), ctx_.hooks);
  const Tensor ids = Tensor::from_vector_i32(vocab, {int64_t(vocab.size())});
  Var w = embedding(head_weight(), ids);  // [K, C]
  Var b = head_bias();
  if (b) b = reshape(embedding(reshape(b, {b->value.numel(), 1}), ids), {int64_t(vocab.size())});
  return linear(h, w, b);
}

Var gather_rows(const Var& x, const std::vector<int32_t>& rows) {
  const int64_t c = x->value.dim(-1);
  Var flat = reshape(x, {x->value.numel() / c, c});
  return embedding(flat, Tensor::from_vector_i32(rows, {int64_t(rows.size())}));
}

std::unique_ptr<Model> load_model(const std::string& dir, const LoadOptions& opts) {
  HFConfig config = load_hf_config(dir);
  const ArchSpec& arch = arch_for(config.model_type, join_path(dir, "config.json"));
  SafetensorsSet set(dir);
  // A hostile config.json (num_hidden_layers 10^9) must not make us plan billions of tensors:
  // each layer has at least four tensors, so the files must hold that many; then the weights
  // must fit in memory (models/memory.h).
  const size_t stored = set.names().size();
  if (double(config.num_hidden_layers) * 4 > double(stored))
    fail("{}: config.json has num_hidden_layers {}, but the safetensors files hold only {} tensors",
         dir, config.num_hidden_layers, stored);
  MemoryPlan plan;
  plan.weight_bytes_per_param = bytes_per_param(opts.base_dtype.value_or(stored_dtype_of(config)));
  check_memory(estimate_memory(config, plan), "loading " + dir);
  const std::vector<TensorSpec> specs = arch.tensors(config);
  std::map<std::string, const TensorSpec*> expected;
  for (const TensorSpec& s : specs) expected[s.name] = &s;
  const bool seq_cls = is_seq_cls_config(config);

  // Validate everything before converting anything.
  std::map<std::string, std::string> stored_of;  // canonical -> stored name
  std::vector<std::string> problems;
  for (const std::string& stored : set.names()) {
    if (seq_cls && is_head_tensor(stored)) continue;
    const std::string name = arch.canonical_name(stored, config);
    if (name.empty()) continue;
    if (!expected.count(name)) {
      problems.push_back(fmt::format("unexpected tensor \"{}\" ({}) for {} with this config",
                                     stored, set.file_of(stored), config.model_type));
      continue;
    }
    auto [it, inserted] = stored_of.emplace(name, stored);
    if (!inserted) {
      // An alias (e.g. BERT's cls.predictions.decoder.bias for cls.predictions.bias, one tensor
      // in transformers) yields to the canonical name; two aliases of one tensor are an error.
      if (stored == name)
        it->second = stored;
      else if (it->second != name)
        problems.push_back(
            fmt::format("tensors \"{}\" and \"{}\" are both \"{}\"", it->second, stored, name));
    }
  }
  for (const TensorSpec& s : specs) {
    auto it = stored_of.find(s.name);
    if (it == stored_of.end()) {
      if (seq_cls && is_lm_head_tensor(s.name)) continue;  // zeros below
      problems.push_back(
          fmt::format("missing tensor \"{}\" (expected shape {})", s.name, shape_str(s.shape)));
      continue;
    }
    const SafetensorInfo& info = set.info(it->second);
    if (info.shape != s.shape)
      problems.push_back(fmt::format("tensor \"{}\" in {} has shape {}, expected {}", it->second,
                                     set.file_of(it->second), shape_str(info.shape),
                                     shape_str(s.shape)));
    else if (info.dtype != DType::F32 && info.dtype != DType::BF16 && info.dtype != DType::F16)
      problems.push_back(fmt::format("tensor \"{}\" in {} is {}, expected F32, BF16 or F16",
                                     it->second, set.file_of(it->second), info.stored_dtype));
  }
  if (!problems.empty()) {
    if (problems.size() == 1) fail("{}: {}", dir, problems[0]);
    fail("{}: {} (and {} more problem{})", dir, problems[0], problems.size() - 1,
         problems.size() > 2 ? "s" : "");
  }

  std::map<std::string, Tensor> tensors;
  std::vector<std::string> non_finite;  // NaN / inf weights: reported, never computed with
  for (const TensorSpec& s : specs) {
    if (!stored_of.count(s.name)) {
      tensors[s.name] = Tensor::zeros(s.shape, DType::F32);  // a seq-cls folder's absent LM head
      continue;
    }
    Tensor t = set.get(stored_of.at(s.name));
    if (const int64_t bad = count_non_finite(t); bad > 0)
      non_finite.push_back(fmt::format(
          "tensor \"{}\" in {} holds {} non-finite value{} (NaN or inf)", stored_of.at(s.name),
          set.file_of(stored_of.at(s.name)), bad, bad > 1 ? "s" : ""));
    if (!non_finite.empty()) continue;
    const DType want = target_dtype(t, opts);
    tensors[s.name] = want == t.dtype() ? t : convert_rows(t, want);
  }
  if (non_finite.size() == 1) fail("{}: {}", dir, non_finite[0]);
  if (non_finite.size() > 1)
    fail("{}: {} (and {} more tensor{} with NaN or inf)", dir, non_finite[0], non_finite.size() - 1,
         non_finite.size() > 2 ? "s" : "");
  return arch.build(std::move(config), arch, std::move(tensors));
}

}  // namespace peft
