#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "autograd/params.h"
#include "core/error.h"
#include "io/files.h"
#include "io/safetensors.h"
#include "models/evaluate.h"
#include "models/init.h"
#include "models/kv_cache.h"
#include "models/memory.h"
#include "models/model.h"
#include "models/registry.h"
#include "ops/elementwise.h"
#include "testing.h"
#include "train/batch.h"

namespace peft {
namespace {

namespace fs = std::filesystem;

// A tiny random model folder of one architecture (written once per process and arch).
std::string tiny_model(const std::string& arch, DType dtype = DType::F32,
                       nlohmann::json patch = nlohmann::json::object()) {
  const std::string dir = ::testing::TempDir() + "/peft_models_" + arch + "_" + dtype_name(dtype) +
                          std::to_string(std::hash<std::string>{}(patch.dump()));
  if (file_exists(dir + "/model.safetensors")) return dir;
  fs::create_directories(dir);
  nlohmann::json cfg = preset_config(arch_for(arch), "tiny");
  cfg.update(patch);
  InitOptions opts;
  opts.seed = 7;
  opts.dtype = dtype;
  write_random_model(parse_hf_config(cfg, "tiny"), dir, opts);
  return dir;
}

Tensor ids_tensor(const std::vector<int32_t>& ids, int64_t B) {
  return Tensor::from_vector_i32(ids, {B, int64_t(ids.size()) / B});
}

std::vector<int32_t> random_ids(size_t n, uint64_t seed, int vocab = 512) {
  Rng rng(seed);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = int32_t(rng.below(uint64_t(vocab)));
  return v;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InternalError& e) {
    return std::string("INTERNAL ") + e.what();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const char* const kArchs[] = {"qwen2", "llama", "baichuan", "bert"};

TEST(Models, InitWritesHuggingFaceInitAndLoads) {
  for (const char* arch : kArchs) {
    SCOPED_TRACE(arch);
    const std::string dir = tiny_model(arch);
    auto model = load_model(dir);
    SafetensorsSet set(dir);
    int64_t stored = 0;
    for (const std::string& n : set.names()) stored += shape_numel(set.info(n).shape);
    EXPECT_EQ(model->parameter_count(), stored);
    for (const auto& [name, v] : model->weights()) {
      const std::vector<float> x = v->value.to_vector();
      double mean = 0, sq = 0;
      for (float f : x) mean += f, sq += double(f) * f;
      mean /= double(x.size());
      const double sd = std::sqrt(sq / double(x.size()) - mean * mean);
      if (name.ends_with("bias")) {
        EXPECT_EQ(sq, 0.0) << name;
      } else if (v->value.ndim() == 1) {
        EXPECT_EQ(mean, 1.0) << name;  // norm weights
      } else {
        EXPECT_NEAR(sd, 0.02, 0.004) << name;
      }
    }
  }
}

TEST(Models, InitIsReproducibleBySeed) {
  const std::string a = ::testing::TempDir() + "/peft_seed_a",
                    b = ::testing::TempDir() + "/peft_seed_b";
  fs::create_directories(a);
  fs::create_directories(b);
  const HFConfig c = parse_hf_config(preset_config(arch_for("qwen2"), "tiny"), "tiny");
  write_random_model(c, a, {3, DType::BF16});
  write_random_model(c, b, {3, DType::BF16});
  EXPECT_EQ(read_text_file(a + "/model.safetensors"), read_text_file(b + "/model.safetensors"));
  write_random_model(c, b, {4, DType::BF16});
  EXPECT_NE(read_text_file(a + "/model.safetensors"), read_text_file(b + "/model.safetensors"));
  EXPECT_EQ(read_json_file(a + "/config.json")["torch_dtype"], "bfloat16");
}

TEST(Models, ValidationNamesTheTensorAndBothShapes) {
  const std::string src = tiny_model("qwen2");
  const std::string dir = ::testing::TempDir() + "/peft_bad_qwen2";
  fs::create_directories(dir);
  fs::copy_file(src + "/config.json", dir + "/config.json", fs::copy_options::overwrite_existing);
  SafetensorsSet set(src);
  auto rewrite =
      [&](const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
        std::vector<std::pair<std::string, Tensor>> t;
        for (const std::string& n : set.names()) t.emplace_back(n, set.get(n));
        edit(t);
        save_safetensors(dir + "/model.safetensors", t);
      };
  rewrite([](auto& t) {
    for (auto& [n, v] : t)
      if (n == "model.layers.1.self_attn.k_proj.weight") v = Tensor::zeros({64, 64});
  });
  std::string e = error_of([&] { load_model(dir); });
  EXPECT_NE(e.find("model.layers.1.self_attn.k_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("[64, 64]"), std::string::npos) << e;
  EXPECT_NE(e.find("[32, 64]"), std::string::npos) << e;

  rewrite(
      [](auto& t) { std::erase_if(t, [](auto& p) { return p.first == "model.norm.weight"; }); });
  e = error_of([&] { load_model(dir); });
  EXPECT_NE(e.find("missing tensor \"model.norm.weight\" (expected shape [64])"), std::string::npos)
      << e;

  rewrite([](auto& t) { t.emplace_back("model.extra.weight", Tensor::zeros({2})); });
  e = error_of([&] { load_model(dir); });
  EXPECT_NE(e.find("unexpected tensor \"model.extra.weight\""), std::string::npos) << e;

  rewrite([](auto& t) {
    t.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", Tensor::zeros({8}));
  });
  EXPECT_EQ(error_of([&] { load_model(dir); }), "");  // a known buffer is ignored
}

// Hidden -> logits of every position, as f32 values.
std::vector<float> all_logits(Model& m, const ModelInputs& in) {
  return m.logits(m.forward(in))->value.to_vector();
}

TEST(Models, BertLoadsWithoutPrefixAndWithGammaBeta) {
  const std::string src = tiny_model("bert");
  const std::string dir = ::testing::TempDir() + "/peft_bert_renamed";
  fs::create_directories(dir);
  fs::copy_file(src + "/config.json", dir + "/config.json", fs::copy_options::overwrite_existing);
  SafetensorsSet set(src);
  std::vector<std::pair<std::string, Tensor>> t;
  for (std::string n : set.names()) {
    Tensor v = set.get(n);
    if (n.starts_with("bert.")) n = n.substr(5);
    if (n.ends_with("LayerNorm.weight")) n = n.substr(0, n.size() - 6) + "gamma";
    if (n.ends_with("LayerNorm.bias")) n = n.substr(0, n.size() - 4) + "beta";
    t.emplace_back(n, v);
  }
  t.emplace_back("pooler.dense.weight", Tensor::zeros({64, 64}));  // BertForPreTraining extras
  t.emplace_back("cls.seq_relationship.bias", Tensor::zeros({2}));
  save_safetensors(dir + "/model.safetensors", t);
  auto a = load_model(src), b = load_model(dir);
  ModelInputs in;
  in.input_ids = ids_tensor(random_ids(12, 1), 2);
  EXPECT_EQ(all_logits(*a, in), all_logits(*b, in));
}

// Logits at every real position of a right-padded batch equal those of each sequence alone.
TEST(Models, RightPaddingDoesNotChangeRealPositions) {
  for (const char* arch : kArchs) {
    SCOPED_TRACE(arch);
    auto m = load_model(tiny_model(arch));
    const std::vector<int32_t> a = random_ids(9, 2), b = random_ids(5, 3);
    ModelInputs batch;
    std::vector<int32_t> ids = a, mask(18, 1);
    for (int i = 0; i < 9; ++i) {
      ids.push_back(i < 5 ? b[size_t(i)] : 0);
      mask[size_t(9 + i)] = i < 5;
    }
    batch.input_ids = ids_tensor(ids, 2);
    batch.attention_mask = ids_tensor(mask, 2);
    const std::vector<float> padded = all_logits(*m, batch);
    ModelInputs one;
    one.input_ids = ids_tensor(b, 1);
    const std::vector<float> alone = all_logits(*m, one);
    const size_t V = 512;
    std::vector<double> p(padded.begin() + 9 * V, padded.begin() + 14 * V);
    EXPECT_TRUE(testing::all_close(p, std::vector<double>(alone.begin(), alone.end()),
                                   tol::kReductionAbs, tol::kReductionRel));
  }
}

TEST(Models, EvalBatchingDoesNotChangeTheLoss) {
  for (const char* arch : kArchs) {
    SCOPED_TRACE(arch);
    auto m = load_model(tiny_model(arch));
    std::vector<TokenRecord> recs;
    for (int i = 0; i < 5; ++i) {
      TokenRecord r;
      r.input_ids = random_ids(size_t(3 + 7 * i % 17), uint64_t(10 + i));
      r.labels = r.input_ids;
      r.labels[1] = -100;
      recs.push_back(r);
    }
    const EvalResult one = evaluate_records(*m, recs, 1), three = evaluate_records(*m, recs, 3);
    EXPECT_EQ(one.tokens, three.tokens);
    EXPECT_NEAR(one.loss, three.loss, 1e-6 * one.loss);
    EXPECT_NEAR(one.loss, std::log(512.0), 0.1);  // random init: about uniform
  }
}

TEST(Models, KvCacheGivesTheFullForwardLogits) {
  for (const char* arch : {"qwen2", "baichuan", "llama"}) {
    for (int64_t B : {1, 2}) {
      SCOPED_TRACE(std::string(arch) + " B=" + std::to_string(B));
      auto m = load_model(tiny_model(arch));
      const int64_t T = 11;
      const std::vector<int32_t> ids = random_ids(size_t(B * T), 5);
      ModelInputs full;
      full.input_ids = ids_tensor(ids, B);
      const std::vector<float> ref = all_logits(*m, full);
      const HFConfig& c = m->config();
      KVCache cache(c.num_hidden_layers, B, 16, c.num_key_value_heads, c.head_dim);
      std::vector<float> got(ref.size());
      const int64_t V = c.vocab_size;
      int64_t t0 = 0;
      for (int64_t step : {int64_t(4), int64_t(1), int64_t(3), int64_t(1), int64_t(2)}) {
        std::vector<int32_t> chunk;
        for (int64_t b = 0; b < B; ++b)
          for (int64_t t = t0; t < t0 + step; ++t) chunk.push_back(ids[size_t(b * T + t)]);
        ModelInputs in;
        in.input_ids = ids_tensor(chunk, B);
        const std::vector<float> l =
            m->logits(m->forward(in, {.cache = &cache}))->value.to_vector();
        for (int64_t b = 0; b < B; ++b)
          std::copy(l.begin() + b * step * V, l.begin() + (b + 1) * step * V,
                    got.begin() + (b * T + t0) * V);
        t0 += step;
      }
      EXPECT_EQ(cache.length(), T);
      EXPECT_TRUE(testing::all_close(std::vector<double>(got.begin(), got.end()),
                                     std::vector<double>(ref.begin(), ref.end()),
                                     tol::kReductionAbs, tol::kReductionRel));
    }
  }
}

TEST(Models, StoredBf16IsMappedAndConversionsStayClose) {
  const std::string dir = tiny_model("qwen2", DType::BF16);
  auto mapped = load_model(dir);
  for (const auto& [name, v] : mapped->weights()) {
    if (v->value.ndim() == 2) {
      EXPECT_EQ(v->value.dtype(), DType::BF16) << name;
      EXPECT_FALSE(v->value.writable()) << name << " should be a view of the mapped file";
    } else {
      EXPECT_EQ(v->value.dtype(), DType::F32) << name;
    }
  }
  std::vector<TokenRecord> recs(1);
  recs[0].input_ids = random_ids(40, 8);
  recs[0].labels = recs[0].input_ids;
  const double ref = evaluate_records(*mapped, recs, 1).loss;
  for (auto [dt, bound] : {std::pair{DType::F32, 1e-4}, {DType::Q8_0, 2e-3}, {DType::Q4_0, 3e-2}}) {
    LoadOptions o;
    o.base_dtype = dt;
    auto m = load_model(dir, o);
    EXPECT_EQ(m->weights().at("model.layers.0.mlp.up_proj.weight")->value.dtype(), dt);
    EXPECT_NEAR(evaluate_records(*m, recs, 1).loss, ref, bound * ref) << dtype_name(dt);
  }
}

// A hook that records what the model asks for and adds virtual tokens.
class ProbeHooks final : public ModelHooks {
 public:
  explicit ProbeHooks(int64_t virtual_tokens) : p_(virtual_tokens) {}
  Var input_embeddings(const Var& e) override {
    if (!p_) return e;
    const int64_t B = e->value.dim(0), C = e->value.dim(2);
    Tensor v = Tensor::zeros({B, p_, C});
    v.fill(0.01f);
    return concat({constant(v), e}, 1);
  }
  int64_t num_virtual_tokens() const override { return p_; }
  const LoraBranch* linear_branch(const LinearSite& site) override {
    modules.push_back(site.module);
    return nullptr;
  }
  Var after_sublayer(int layer, Sublayer which, const Var& h, const Var&,
                     const SublayerNorm* norm) override {
    sublayers.push_back(layer * 2 + (which == Sublayer::FeedForward));
    post_ln = norm != nullptr;
    return h;
  }
  std::vector<std::string> modules;
  std::vector<int> sublayers;
  bool post_ln = false;

 private:
  int64_t p_;
};

TEST(Models, HooksSeeEveryLinearSiteByHuggingFaceName) {
  for (const char* arch : kArchs) {
    SCOPED_TRACE(arch);
    auto m = load_model(tiny_model(arch));
    ProbeHooks hooks(0);
    ModelInputs in;
    in.input_ids = ids_tensor(random_ids(6, 4), 1);
    m->forward(in, {.hooks = &hooks});
    std::vector<std::string> expected;
    for (const LinearSite& s : m->linear_sites())
      if (s.layer >= 0) expected.push_back(s.module);
    EXPECT_EQ(hooks.modules, expected);
    EXPECT_EQ(hooks.sublayers, (std::vector<int>{0, 1, 2, 3}));
    EXPECT_EQ(hooks.post_ln, !m->is_causal_lm());  // BERT hands its LayerNorm to the hook
  }
  auto q = load_model(tiny_model("qwen2"));
  EXPECT_EQ(q->linear_sites()[0].module, "model.layers.0.self_attn.q_proj");
  auto b = load_model(tiny_model("baichuan"));
  EXPECT_EQ(b->linear_sites()[0].module, "model.layers.0.self_attn.W_pack");
  EXPECT_EQ(b->linear_sites()[0].out_features, 3 * 64);
  auto e = load_model(tiny_model("bert"));
  EXPECT_EQ(e->linear_sites()[0].module, "bert.encoder.layer.0.attention.self.query");
  EXPECT_EQ(arch_for("bert").default_lora_targets, (std::vector<std::string>{"query", "value"}));
}

TEST(Models, VirtualTokensShiftLabelsAndPositions) {
  for (const char* arch : kArchs) {
    SCOPED_TRACE(arch);
    auto m = load_model(tiny_model(arch));
    ProbeHooks hooks(3);
    ModelInputs in;
    in.input_ids = ids_tensor(random_ids(8, 6), 2);
    Var h = m->forward(in, {.hooks = &hooks});
    EXPECT_EQ(h->value.shape(), (Shape{2, 7, 64}));
    CrossEntropyStats stats;
    Tensor labels = in.input_ids.clone();
    m->loss(h, labels, {}, &stats);
    // No label on a virtual token; the last one predicts the first real token (as in PEFT).
    EXPECT_EQ(stats.count, 2 * 4);
  }
}

TEST(Models, FullFineTuningGivesEveryWeightAGradient) {
  for (const char* arch : kArchs) {
    SCOPED_TRACE(arch);
    auto m = load_model(tiny_model(arch, DType::F32, {{"tie_word_embeddings", true}}));
    ParamStore params;
    m->make_trainable(params);
    ModelInputs in;
    in.input_ids = ids_tensor(random_ids(10, 9), 2);
    Tape tape;
    Var loss = m->loss(m->forward(in), in.input_ids);
    tape.backward(loss);
    for (const auto& e : params.entries()) {
      double n = 0;
      for (float g : e.var->grad.to_vector()) n += double(g) * g;
      EXPECT_GT(n, 0.0) << e.name;
    }
    EXPECT_FALSE(params.contains("lm_head.weight"));  // tied: the embeddings serve as the head
  }
}

// Activation checkpointing (ForwardContext::recompute_layers): the forward records one closure
// per decoder layer instead of every op inside it, and backward, which reruns each layer on its
// own tape, gives every weight exactly the gradient of the ordinary pass.
TEST(Models, RecomputedLayersRecordLessAndGiveTheSameGradients) {
  for (const char* arch : {"qwen2", "llama", "baichuan"}) {
    SCOPED_TRACE(arch);
    ModelInputs in;
    in.input_ids = ids_tensor(random_ids(12, 4), 2);
    std::vector<std::vector<float>> grads[2];
    size_t recorded[2] = {0, 0};
    for (int recompute = 0; recompute < 2; ++recompute) {
      auto m = load_model(tiny_model(arch));
      ParamStore params;
      m->make_trainable(params);
      Tape tape;
      Var hidden = m->forward(in, {.training = true, .recompute_layers = recompute == 1});
      recorded[recompute] = tape.size();
      tape.backward(m->loss(hidden, in.input_ids));
      for (const auto& e : params.entries()) grads[recompute].push_back(e.var->grad.to_vector());
    }
    EXPECT_LT(recorded[1], recorded[0]);
    ASSERT_EQ(grads[0].size(), grads[1].size());
    for (size_t i = 0; i < grads[0].size(); ++i) EXPECT_EQ(grads[0][i], grads[1][i]) << i;
  }
}

TEST(Models, TokenLogitsPickRowsAndVocab) {
  for (const char* arch : {"qwen2", "bert"}) {
    auto m = load_model(tiny_model(arch));
    ModelInputs in;
    in.input_ids = ids_tensor(random_ids(8, 12), 2);
    Var h = m->forward(in);
    const std::vector<float> all = m->logits(h)->value.to_vector();
    const std::vector<float> some = m->token_logits(h, {5, 2}, {7, 300})->value.to_vector();
    ASSERT_EQ(some.size(), 4u);
    EXPECT_NEAR(some[0], all[5 * 512 + 7], 1e-5);
    EXPECT_NEAR(some[1], all[5 * 512 + 300], 1e-5);
    EXPECT_NEAR(some[3], all[2 * 512 + 300], 1e-5);
  }
}

// Packing: records concatenated in one row, with positions restarting at 0 and attention kept
// within each record, give every record the logits, loss and gradients it has alone.
TEST(Models, PackedRecordsEqualTheRecordsAlone) {
  for (const char* arch : kArchs) {
    SCOPED_TRACE(arch);
    auto m = load_model(tiny_model(arch));
    ParamStore params;
    m->make_trainable(params);
    std::vector<Example> records;
    for (size_t n : {6u, 9u, 5u}) {
      Example e;
      e.input_ids = random_ids(n, 40 + n);
      e.labels = e.input_ids;
      records.push_back(e);
    }
    BatchBuilder builder(records, {.batch_size = 2,
                                   .max_len = 16,
                                   .packing = true,
                                   .shuffle = false,
                                   .shifted = m->is_causal_lm()});
    ASSERT_EQ(builder.num_examples(), 2u);  // [6 + 9], [5] padded to 15
    const Batch b = builder.make_batch({0, 1});
    ModelInputs packed;
    packed.input_ids = b.input_ids;
    packed.attention_mask = b.attention_mask;
    packed.position_ids = b.positions;
    packed.segment_ids = b.segment_ids;
    CrossEntropyOptions ce;
    ce.normaliser = double(b.target_tokens);
    Tape tape;
    Var h = m->forward(packed);
    const std::vector<float> logits = m->logits(h)->value.to_vector();
    Var loss = m->loss(h, b.labels, ce);
    tape.backward(loss);
    const std::vector<float> packed_grads = params.grads().to_vector();
    const double packed_loss = loss->value.to_vector()[0];

    // Each record alone; gradients accumulate.
    params.zero_grad();
    double alone_loss = 0;
    const int64_t V = m->config().vocab_size, T = b.seq;
    const size_t starts[] = {0, 6, size_t(T)};  // flat row offsets: row 0 at 0 and 6, row 1
    for (size_t r = 0; r < records.size(); ++r) {
      Example e = records[r];
      if (m->is_causal_lm()) e.labels[0] = kIgnoreIndex;  // as packing drops it for a decoder
      ModelInputs one;
      one.input_ids = Tensor::from_vector_i32(e.input_ids, {1, int64_t(e.input_ids.size())});
      Tape t1;
      Var h1 = m->forward(one);
      const std::vector<float> l1 = m->logits(h1)->value.to_vector();
      std::vector<double> region(
          logits.begin() + long(starts[r] * size_t(V)),
          logits.begin() + long((starts[r] + e.input_ids.size()) * size_t(V)));
      EXPECT_TRUE(testing::all_close(region, std::vector<double>(l1.begin(), l1.end()),
                                     tol::kReductionAbs, tol::kReductionRel))
          << "record " << r;
      Var loss1 = m->loss(h1, Tensor::from_vector_i32(e.labels, one.input_ids.shape()), ce);
      t1.backward(loss1);
      alone_loss += loss1->value.to_vector()[0];
    }
    EXPECT_NEAR(packed_loss, alone_loss, 1e-5 * alone_loss);
    const std::vector<float> g = params.grads().to_vector();
    EXPECT_TRUE(testing::all_close(std::vector<double>(packed_grads.begin(), packed_grads.end()),
                                   std::vector<double>(g.begin(), g.end()), 1e-6, 1e-4));

    // Without positions and segments the second record sees the first: different logits.
    ModelInputs leaky = packed;
    leaky.position_ids = Tensor();
    leaky.segment_ids = Tensor();
    const std::vector<float> crossed = all_logits(*m, leaky);
    EXPECT_GT(std::fabs(crossed[size_t(7 * V + 11)] - logits[size_t(7 * V + 11)]),
              1e-4);  // id 0 = pad: tied zero row
  }
}

TEST(Models, PackedRowsRejectVirtualTokensAndBadShapes) {
  auto m = load_model(tiny_model("qwen2"));
  ProbeHooks hooks(2);
  ModelInputs in;
  in.input_ids = ids_tensor(random_ids(8, 6), 2);
  in.segment_ids = Tensor::zeros({2, 4}, DType::I32);
  EXPECT_NE(error_of([&] { m->forward(in, {.hooks = &hooks}); }).find("virtual tokens"),
            std::string::npos);
  in.segment_ids = Tensor::zeros({2, 3}, DType::I32);
  EXPECT_NE(error_of([&] { m->forward(in); }).find("segment_ids"), std::string::npos);
  in.segment_ids = Tensor();
  in.position_ids = Tensor::zeros({1, 4}, DType::I32);
  EXPECT_NE(error_of([&] { m->forward(in); }).find("position_ids"), std::string::npos);
}

// The memory guard's activation term with --gradient-checkpointing on Qwen2-7B's shapes at
// 1 × 512 tokens: the layer inputs (28 × 3584 floats a token) and one layer's activations with
// their gradients instead of all 28 layers' (the estimate it was built from: about 6.7 GB → 0.6
// GB).
TEST(MemoryEstimate, RecomputedLayersKeepLayerInputsAndOneLayer) {
  HFConfig c;
  c.vocab_size = 151936;
  c.hidden_size = 3584;
  c.intermediate_size = 18944;
  c.num_hidden_layers = 28;
  c.num_attention_heads = 28;
  c.num_key_value_heads = 4;
  c.head_dim = 128;
  MemoryPlan plan;
  plan.weight_bytes_per_param = 2;
  plan.batch = 1;
  plan.tokens = 512;
  const MemoryEstimate kept = estimate_memory(c, plan);
  plan.recompute_layers = true;
  const MemoryEstimate recomputed = estimate_memory(c, plan);
  const double logits = 128.0 * 151936 * 4 * 2;  // the chunked cross-entropy, the same in both
  const double h = 3584, I = 18944, L = 28, T = 512;
  EXPECT_NEAR(kept.activations - logits, T * (L * (12 * h + 4 * I) + 4 * h) * 4, 1.0);
  EXPECT_NEAR(recomputed.activations - logits, T * (L * h + 2 * (12 * h + 4 * I) + 4 * h) * 4, 1.0);
  EXPECT_LT(recomputed.activations, 0.15 * kept.activations);
  EXPECT_EQ(recomputed.weights, kept.weights);
}

}  // namespace
}  // namespace peft
