#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "autograd/params.h"
#include "io/files.h"
#include "io/safetensors.h"
#include "models/init.h"
#include "models/model.h"
#include "models/registry.h"
#include "ops/linear.h"
#include "peft/lora.h"
#include "testing.h"

namespace peft {
namespace {

std::vector<LinearSite> decoder_sites(int layers) {
  std::vector<LinearSite> sites;
  for (int l = 0; l < layers; ++l)
    for (const char* name :
         {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}) {
      const std::string part =
          std::string(name).find("proj") != std::string::npos &&
                  (name[0] == 'q' || name[0] == 'k' || name[0] == 'v' || name[0] == 'o')
              ? "self_attn"
              : "mlp";
      sites.push_back(
          {"model.layers." + std::to_string(l) + "." + part + "." + name, name, l, 16, 24});
    }
  sites.push_back({"lm_head", "lm_head", -1, 16, 50});
  return sites;
}

LoraConfig config_from(const char* json) {
  return LoraConfig::from_json(nlohmann::json::parse(json), "adapter_config.json");
}

std::vector<std::string> targeted(const LoraConfig& c,
                                  const std::vector<std::string>& defaults = {"q_proj", "v_proj"}) {
  std::vector<std::string> out;
  for (const LinearSite& s : decoder_sites(2))
    if (lora_targets(c, s, defaults)) out.push_back(s.module);
  return out;
}

TEST(Lora, TargetsFollowPeftMatchingRules) {
  // Absent target_modules: the architecture's default list.
  EXPECT_EQ(targeted(config_from(R"({"peft_type": "LORA"})")),
            (std::vector<std::string>{
                "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}));
  // A list matches exact names or dotted suffixes, never a bare substring.
  EXPECT_EQ(
      targeted(config_from(R"({"peft_type": "LORA", "target_modules": ["mlp.down_proj", "proj"]})"))
          .size(),
      2u);
  // A string is a regex that must match the whole path.
  EXPECT_EQ(targeted(config_from(
                R"({"peft_type": "LORA", "target_modules": ".*\\.1\\.self_attn\\.(q|k)_proj"})")),
            (std::vector<std::string>{"model.layers.1.self_attn.q_proj",
                                      "model.layers.1.self_attn.k_proj"}));
  EXPECT_TRUE(
      targeted(config_from(R"({"peft_type": "LORA", "target_modules": "q_proj"})")).empty());
  // all-linear: every linear but the output head.
  EXPECT_EQ(
      targeted(config_from(R"({"peft_type": "LORA", "target_modules": "all-linear"})")).size(),
      14u);
  // layers_to_transform keeps only those layer indices.
  EXPECT_EQ(targeted(config_from(R"({"peft_type": "LORA", "layers_to_transform": [1]})")),
            (std::vector<std::string>{"model.layers.1.self_attn.q_proj",
                                      "model.layers.1.self_attn.v_proj"}));
}

TEST(Lora, RankAndAlphaPatternsAndRsLora) {
  LoraConfig c = config_from(
      R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "rank_pattern": {"v_proj": 4, "layers.1.self_attn.q_proj": 2},
          "alpha_pattern": {"q_proj": 4}})");
  EXPECT_EQ(lora_rank_for(c, "model.layers.0.self_attn.v_proj"), 4);
  EXPECT_EQ(lora_rank_for(c, "model.layers.1.self_attn.q_proj"), 2);
  EXPECT_EQ(lora_rank_for(c, "model.layers.0.self_attn.q_proj"), 8);
  EXPECT_FLOAT_EQ(lora_alpha_for(c, "model.layers.0.self_attn.q_proj"), 4.0f);
  EXPECT_FLOAT_EQ(lora_scale(c, 8, 16), 2.0f);
  c.use_rslora = true;
  EXPECT_FLOAT_EQ(lora_scale(c, 4, 16), 8.0f);
}

TEST(Lora, ConfigRejectsWhatItCannotHonour) {
  EXPECT_THROW(config_from(R"({"peft_type": "LORA", "use_dora": true})"), Error);
  EXPECT_THROW(config_from(R"({"peft_type": "LORA", "fan_in_fan_out": true})"), Error);
  EXPECT_THROW(config_from(R"({"peft_type": "PREFIX_TUNING"})"), Error);
  EXPECT_THROW(config_from(R"({"peft_type": "LORA", "r": "eight"})"), Error);
  EXPECT_THROW(config_from(R"({"peft_type": "LORA", "bias": "some"})"), Error);
  LoraConfig c = config_from(
      R"({"peft_type": "LORA", "r": 4, "unknown_future_key": 1, "init_lora_weights": "gaussian"})");
  LoraConfig back = LoraConfig::from_json(c.to_json(), "round trip");
  EXPECT_EQ(back.r, 4);
  EXPECT_EQ(back.init_lora_weights, "gaussian");
  EXPECT_EQ(c.to_json()["inference_mode"], true);
}

// Numbers that do not fit their field were converted by nlohmann's get<int>(): 1e30 is undefined
// behaviour (found by fuzz/fuzz_adapter_config.cpp under UBSan), 8.5 and 2^40 silently truncated.
// Each is one Error naming the file and the key; an integral float (8.0) is the integer.
TEST(Lora, ConfigNumbersThatDoNotFitAreRefusedNamingTheKey) {
  auto error = [](const char* json) {
    try {
      config_from(json);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  for (const char* json :
       {R"({"peft_type": "LORA", "r": 1e30})", R"({"peft_type": "LORA", "r": 8.5})",
        R"({"peft_type": "LORA", "r": 1099511627776})", R"({"peft_type": "LORA", "r": -1e300})"})
    EXPECT_NE(error(json).find("\"r\" is"), std::string::npos) << json << ": " << error(json);
  EXPECT_NE(
      error(R"({"peft_type": "LORA", "layers_to_transform": 1e300})").find("layers_to_transform"),
      std::string::npos);
  EXPECT_NE(error(R"({"peft_type": "LORA", "layers_to_transform": [0, 1e19]})")
                .find("layers_to_transform"),
            std::string::npos);
  EXPECT_NE(
      error(R"({"peft_type": "LORA", "rank_pattern": {"q_proj": 1e40}})").find("rank_pattern"),
      std::string::npos);
  EXPECT_NE(error(R"({"peft_type": "LORA", "lora_alpha": 1e300})").find("lora_alpha"),
            std::string::npos);
  EXPECT_EQ(config_from(R"({"peft_type": "LORA", "r": 8.0})").r, 8);
  EXPECT_EQ(
      config_from(R"({"peft_type": "LORA", "layers_to_transform": [1, 3]})").layers_to_transform,
      (std::vector<int>{1, 3}));
}

TEST(Lora, OnlyTargetedSitesGetParametersAndIdentityAtInit) {
  ParamStore params;
  LoraConfig c = config_from(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8})");
  auto sites = decoder_sites(2);
  LoraMethod lora(c, sites, {"q_proj", "v_proj"}, params);
  params.allocate();
  Rng rng(3);
  lora.initialize(rng);
  EXPECT_EQ(lora.targeted_sites().size(), 4u);
  EXPECT_EQ(params.entries().size(), 4u * 2);        // A, B for 4 sites
  EXPECT_EQ(lora.linear_branch(sites[1]), nullptr);  // k_proj untargeted
  const LoraBranch* q = lora.linear_branch(sites[0]);
  ASSERT_NE(q, nullptr);
  EXPECT_FLOAT_EQ(q->scale, 2.0f);
  for (float v : q->B->value.to_vector()) ASSERT_EQ(v, 0.0f);
  for (float v : q->A->value.to_vector()) ASSERT_LE(std::fabs(v), 0.25f);  // U(±1/√16)
  EXPECT_THROW(LoraMethod(config_from(R"({"peft_type": "LORA", "target_modules": ["nothing"]})"),
                          sites, {}, params),
               Error);
}

// A tiny random model folder of one architecture, written once per process.
std::string tiny_model_dir(const std::string& arch) {
  const std::string dir = ::testing::TempDir() + "/lora_tiny_" + arch;
  if (std::filesystem::exists(dir + "/model.safetensors")) return dir;
  std::filesystem::create_directories(dir);
  InitOptions init;
  init.seed = 11;
  write_random_model(parse_hf_config(preset_config(arch_for(arch), "tiny"), "tiny"), dir, init);
  return dir;
}

// PEFT's bias setting: which base biases train, under which adapter keys (PEFT's wrapper puts a
// targeted layer's bias at <module>.base_layer.bias; bias="all" trains every *bias* tensor).
TEST(Lora, BiasSettingChoosesBiasesByPeftRules) {
  auto qwen = load_model(tiny_model_dir("qwen2"));  // q/k/v have biases
  auto keys = [&](Model& m, const char* bias) {
    ParamStore params;
    LoraMethod lora(
        config_from((std::string(R"({"peft_type": "LORA", "bias": ")") + bias + "\"}").c_str()),
        m.linear_sites(), m.arch().default_lora_targets, params);
    return lora_bias_keys(lora.config(), lora.targeted_sites(), m.weights());
  };
  EXPECT_TRUE(keys(*qwen, "none").empty());
  const std::string p = "model.layers.1.self_attn.";
  auto only = keys(*qwen, "lora_only");
  EXPECT_EQ(only.size(), 4u);  // q and v of 2 layers
  EXPECT_EQ(only.at(p + "q_proj.bias"), "base_model.model." + p + "q_proj.base_layer.bias");
  auto all = keys(*qwen, "all");
  EXPECT_EQ(all.size(), 6u);
  EXPECT_EQ(all.at(p + "k_proj.bias"), "base_model.model." + p + "k_proj.bias");
  EXPECT_EQ(all.at(p + "v_proj.bias"), "base_model.model." + p + "v_proj.base_layer.bias");
  auto bert = load_model(tiny_model_dir("bert"));
  auto bert_all = keys(*bert, "all");
  EXPECT_TRUE(bert_all.contains("bert.embeddings.LayerNorm.bias"));
  EXPECT_TRUE(bert_all.contains("cls.predictions.bias"));
  EXPECT_EQ(bert_all.at("bert.encoder.layer.0.attention.self.key.bias"),
            "base_model.model.bert.encoder.layer.0.attention.self.key.bias");
}

// attach_lora binds the trained biases into the model from their base values: the output is the
// base model's at init, moves with the bias, and the saved adapter holds the biases.
TEST(Lora, TrainedBiasesStartAtTheBaseAndAreSaved) {
  auto m = load_model(tiny_model_dir("qwen2"));
  ModelInputs in;
  in.input_ids = Tensor::from_vector_i32({5, 9, 2, 7}, {1, 4});
  const std::vector<float> base = m->logits(m->forward(in))->value.to_vector();
  ParamStore params;
  auto lora = attach_lora(
      *m, config_from(R"({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "bias": "all"})"), params);
  Rng rng(1);
  lora->initialize(rng);
  EXPECT_EQ(m->logits(m->forward(in, {.hooks = lora.get()}))->value.to_vector(), base);
  const std::string key = "base_model.model.model.layers.0.self_attn.k_proj.bias";
  ASSERT_TRUE(params.contains(key));
  params.get(key)->value.data<float>()[0] += 1.0f;
  EXPECT_NE(m->logits(m->forward(in, {.hooks = lora.get()}))->value.to_vector(), base);
  const std::string dir = ::testing::TempDir() + "/lora_bias_saved";
  std::filesystem::create_directories(dir);
  save_lora_adapter(dir, *lora, params);
  SafetensorsFile file(dir + "/adapter_model.safetensors");
  EXPECT_TRUE(file.contains(key));
  EXPECT_TRUE(file.contains("base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias"));
  EXPECT_EQ(file.get(key).to_vector(), params.get(key)->value.to_vector());
}

TEST(Lora, MergedWeightGivesTheAdapterOutputAndUnmergeRestores) {
  const int64_t n = 5, in = 12, out = 7, r = 3;
  Tensor x = testing::to_tensor(testing::random_vec(size_t(n * in), 1), {n, in});
  Tensor w = testing::to_tensor(testing::random_vec(size_t(out * in), 2), {out, in});
  Tensor a = testing::to_tensor(testing::random_vec(size_t(r * in), 3), {r, in});
  Tensor b = testing::to_tensor(testing::random_vec(size_t(out * r), 4), {out, r});
  LoraBranch branch{constant(a), constant(b), 1.5f};
  Var with = linear(constant(x), constant(w), nullptr, &branch);
  Tensor merged = w.clone();
  lora_merge(merged, a, b, 1.5f);
  Var folded = linear(constant(x), constant(merged));
  EXPECT_TRUE(
      testing::all_close(testing::to_vec(folded->value), testing::to_vec(with->value), 1e-5, 1e-5));
  lora_merge(merged, a, b, 1.5f, -1.0f);
  EXPECT_TRUE(testing::all_close(testing::to_vec(merged), testing::to_vec(w), 1e-6, 1e-6));
  Tensor w16 = w.to(DType::BF16);
  lora_merge(w16, a, b, 1.5f);
  EXPECT_EQ(w16.dtype(), DType::BF16);
  Var folded16 = linear(constant(x), constant(w16));
  EXPECT_TRUE(testing::all_close(testing::to_vec(folded16->value), testing::to_vec(with->value),
                                 0.05, 0.02));
}

TEST(Lora, AdapterFolderRoundTripIsBitIdentical) {
  const std::string dir = ::testing::TempDir() + "/lora_round_trip";
  std::filesystem::create_directories(dir);
  auto sites = decoder_sites(2);
  LoraConfig c = config_from(
      R"({"peft_type": "LORA", "r": 4, "lora_alpha": 16, "target_modules": ["q_proj", "down_proj"]})");
  ParamStore saved_params;
  LoraMethod saved(c, sites, {}, saved_params);
  saved_params.allocate();
  Rng rng(5);
  saved.initialize(rng);
  fill_normal(saved_params.get(lora_key(sites[0].module, 'B'))->value, rng, 0, 1);
  save_lora_adapter(dir, saved, saved_params);

  nlohmann::json config = read_json_file(dir + "/adapter_config.json");
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["target_modules"], (nlohmann::json{"q_proj", "down_proj"}));
  SafetensorsFile file(dir + "/adapter_model.safetensors");
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_TRUE(file.contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
  EXPECT_EQ(file.info("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight").shape,
            (Shape{24, 4}));

  ParamStore loaded_params;
  LoraMethod loaded(read_lora_config(dir), sites, {}, loaded_params);
  loaded_params.allocate();
  load_lora_weights(dir, loaded_params);
  EXPECT_EQ(loaded_params.values().to_vector(), saved_params.values().to_vector());

  // A config that declares a different rank than the file holds: one error naming the tensor.
  ParamStore wrong_params;
  LoraConfig wrong = c;
  wrong.r = 2;
  LoraMethod wrong_rank(wrong, sites, {}, wrong_params);
  wrong_params.allocate();
  try {
    load_lora_weights(dir, wrong_params);
    FAIL() << "loaded a rank-4 adapter into rank 2";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has shape [4, 16], expected [2, 16]"), std::string::npos)
        << e.what();
  }
  std::filesystem::remove_all(dir);
}

// The gradient of every LoRA tensor of every linear site and of every trained bias, through a
// whole tiny model of each family, against central differences of the loss along a random direction
// of that tensor.
TEST(Lora, ModelGradientsMatchFiniteDifferences) {
  for (const char* arch : {"qwen2", "baichuan", "bert"}) {
    SCOPED_TRACE(arch);
    auto model = load_model(tiny_model_dir(arch));
    ParamStore params;  // bias "all": every bias (norms and heads too) trains beside A and B
    auto lora = attach_lora(*model, config_from(R"({"peft_type": "LORA", "r": 2, "lora_alpha": 4,
                                                    "target_modules": "all-linear", "bias": "all"})"),
                            params);
    Rng rng(5);
    lora->initialize(rng);
    for (const auto& e : params.entries())  // B ≠ 0, so A has a gradient too
      if (e.name.find("lora_B") != std::string::npos) fill_normal(e.var->value, rng, 0, 0.3f);
    ModelInputs in;
    std::vector<int32_t> ids(12);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((37 * i + 5) % 500);
    in.input_ids = Tensor::from_vector_i32(ids, {2, 6});
    CrossEntropyOptions sum_loss;
    sum_loss.normaliser = 1;  // Σ ℓ: a larger signal than the mean
    auto loss_value = [&] {   // Σ ℓ accumulated in f64
      NoGradGuard no_grad;
      CrossEntropyStats stats;
      model->loss(model->forward(in, {.hooks = lora.get()}), in.input_ids, sum_loss, &stats);
      return stats.sum;
    };
    {
      Tape tape;
      tape.backward(model->loss(model->forward(in, {.hooks = lora.get()}), in.input_ids, sum_loss));
    }
    ASSERT_GT(params.entries().size(), 2u * 6);
    for (const auto& e : params.entries()) {
      Tensor& w = e.var->value;
      const testing::Vec dir_vec = testing::random_vec(size_t(w.numel()), 17);
      const std::vector<float> g = e.var->grad.to_vector(), w0 = w.to_vector();
      double analytic = 0;
      for (size_t i = 0; i < g.size(); ++i) analytic += double(g[i]) * dir_vec[i];
      auto central = [&](double h) {  // (L(w + h·d) − L(w − h·d)) / 2h
        double l[2];
        for (int k = 0; k < 2; ++k) {
          const double step = k ? -h : h;
          for (size_t i = 0; i < w0.size(); ++i)
            w.data<float>()[i] = float(w0[i] + step * dir_vec[i]);
          l[k] = loss_value();
        }
        return (l[0] - l[1]) / (2 * h);
      };
      // Richardson extrapolation cancels the h² term: the model is far from linear in B·A.
      const double numeric = (4 * central(1e-3) - central(2e-3)) / 3;
      std::memcpy(w.data<float>(), w0.data(), w0.size() * sizeof(float));
      EXPECT_NEAR(analytic, numeric, 1e-3 + 1e-2 * std::fabs(numeric)) << e.name;
      // The check has something to measure, except for BERT's key bias: q·b_k shifts a query's
      // scores alike (no RoPE), softmax ignores it, and its gradient is exactly 0.
      if (e.name.find("self.key.base_layer.bias") == std::string::npos) {
        EXPECT_GT(std::fabs(analytic), 1e-3) << e.name;
      }
    }
  }
}

}  // namespace
}  // namespace peft
