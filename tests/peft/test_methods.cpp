// The method layer (peft/method.h) and the prompt-learning family (peft/prompt_learning.h):
// stacking rules, and the gradient of every new trainable piece (prompt tables, P-Tuning's MLP
// and bi-LSTM encoders, the prefix projection) through whole tiny models against central
// differences. Agreement with PEFT itself is tests/python/test_peft_prompt.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <regex>
#include <sstream>

#include "finite_difference.h"
#include "io/hf_config.h"
#include "models/init.h"
#include "models/model.h"
#include "models/registry.h"
#include "peft/method.h"
#include "peft/prompt_learning.h"
#include "testing.h"

namespace peft {
namespace {

std::string tiny_dir(const std::string& arch) {
  return testing::tiny_model_dir("methods_tiny", arch, 13);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

Method& add(MethodSet& set, const std::string& name, const char* json) {
  const MethodInfo* info = find_method(name);
  EXPECT_NE(info, nullptr) << name;
  nlohmann::json j = nlohmann::json::parse(json);
  j["peft_type"] = info->peft_type;
  return set.add(*info, j, "test config");
}

TEST(Methods, TwoPrefixTypeMethodsAreOneError) {
  auto model = load_model(tiny_dir("qwen2"));
  MethodSet set(*model);
  add(set, "prefix", R"({"num_virtual_tokens": 3})");
  add(set, "lora", R"({"r": 2})");  // LoRA + prefix stacks
  try {
    add(set, "ptuning-v2", R"({"num_virtual_tokens": 2})");
    FAIL() << "two prefix-type methods were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot be stacked"), std::string::npos) << e.what();
  }
}

// Two LoRA adapters on the same sites, the second the negation of the first: their branches add
// up, so the stacked model is the base model.
TEST(Methods, StackedLoraBranchesAddUp) {
  auto model = load_model(tiny_dir("qwen2"));
  ModelInputs in;
  in.input_ids = Tensor::from_vector_i32({5, 9, 2, 7, 11}, {1, 5});
  const std::vector<float> base = model->logits(model->forward(in))->value.to_vector();
  MethodSet set(*model);
  add(set, "lora", R"({"r": 2, "lora_alpha": 4})");
  add(set, "lora", R"({"r": 2, "lora_alpha": 4})");
  set.allocate();
  Rng rng(3);
  for (const auto& e : set.params().entries()) fill_normal(e.var->value, rng, 0, 0.5f);
  for (const auto& e : set.params().entries())
    if (e.name.rfind("m1/", 0) == 0) {
      const Tensor& first = set.params().get(e.name.substr(3))->value;
      const bool negate = e.name.find("lora_B") != std::string::npos;
      for (int64_t i = 0; i < first.numel(); ++i)
        e.var->value.data<float>()[i] = (negate ? -1.0f : 1.0f) * first.data<float>()[i];
    }
  const std::vector<float> stacked =
      model->logits(model->forward(in, {.hooks = set.hooks()}))->value.to_vector();
  ASSERT_EQ(stacked.size(), base.size());
  for (size_t i = 0; i < base.size(); ++i) ASSERT_NEAR(stacked[i], base[i], 1e-4) << i;
  // One adapter alone does change the output.
  MethodSet one(*model);
  add(one, "lora", R"({"r": 2, "lora_alpha": 4})");
  one.allocate();
  for (const auto& e : one.params().entries())
    e.var->value.copy_from(set.params().get(e.name)->value);
  EXPECT_NE(model->logits(model->forward(in, {.hooks = one.hooks()}))->value.to_vector(), base);
}

// Every parameter of each method, through a whole tiny model, along a random direction:
// analytic directional derivative vs Richardson-extrapolated central differences of Σ ℓ.
TEST(Methods, PromptLearningGradientsMatchFiniteDifferences) {
  struct Case {
    const char* arch;
    const char* method;
    const char* json;
  };
  const Case cases[] = {
      {"qwen2", "prompt", R"({"num_virtual_tokens": 3})"},
      {"qwen2", "ptuning", R"({"num_virtual_tokens": 3, "encoder_hidden_size": 8})"},
      {"llama", "ptuning",
       R"({"num_virtual_tokens": 3, "encoder_hidden_size": 6, "encoder_reparameterization_type": "LSTM"})"},
      {"qwen2", "prefix",
       R"({"num_virtual_tokens": 3, "prefix_projection": true, "encoder_hidden_size": 8})"},
      {"baichuan", "ptuning-v2", R"({"num_virtual_tokens": 3})"},
      {"bert", "ptuning-v2", R"({"num_virtual_tokens": 3})"},
      {"bert", "prompt", R"({"num_virtual_tokens": 2})"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.arch) + " " + c.method);
    auto model = load_model(tiny_dir(c.arch));
    MethodSet set(*model);
    Method& m = add(set, c.method, c.json);
    set.allocate();
    Rng rng(5);
    m.initialize(rng, nullptr);
    for (const auto& e : set.params().entries())  // O(1) values so every piece matters
      if (e.name.find("prompt_embeddings") != std::string::npos ||
          e.name.find("embedding.weight") != std::string::npos)
        fill_normal(e.var->value, rng, 0, 0.5f);
    testing::expect_gradients_match_finite_differences(*model, set, testing::tiny_batch());
  }
}

// Prompt-learning counts past int64 (1e300) were undefined behaviour in nlohmann's get<int64_t>()
// (found by fuzz/fuzz_adapter_config.cpp under UBSan); fractions were truncated. Now one Error
// naming the key.
TEST(Methods, PromptLearningConfigNumbersThatDoNotFitAreRefused) {
  auto model = load_model(tiny_dir("qwen2"));
  for (const char* key : {"num_virtual_tokens", "token_dim", "num_layers", "encoder_hidden_size"})
    for (const char* value : {"1e300", "2.5", "-1e300"}) {
      const std::string json =
          std::string(R"({"peft_type": "PREFIX_TUNING", ")") + key + "\": " + value + "}";
      SCOPED_TRACE(json);
      const std::string e = error_of([&] {
        PromptLearningConfig::from_json(nlohmann::json::parse(json), "adapter_config.json",
                                        model->config());
      });
      EXPECT_NE(e.find(std::string("adapter_config.json: \"") + key + "\" is"), std::string::npos)
          << e;
    }
  EXPECT_NE(error_of([&] {
              PromptLearningConfig::from_json(
                  nlohmann::json::parse(R"({"peft_type": "P_TUNING", "encoder_dropout": 1e300})"),
                  "adapter_config.json", model->config());
            }).find("encoder_dropout"),
            std::string::npos);
}

// The adapter folder a method writes loads back bit-identically (encoder weights included).
TEST(Methods, SaveLoadRoundTripIsBitIdentical) {
  auto model = load_model(tiny_dir("qwen2"));
  for (const char* method : {"prompt", "ptuning", "prefix"}) {
    SCOPED_TRACE(method);
    MethodSet a(*model);
    Method& m =
        add(a, method,
            R"({"num_virtual_tokens": 4, "encoder_hidden_size": 8, "prefix_projection": true})");
    a.allocate();
    Rng rng(9);
    m.initialize(rng, nullptr);
    const std::string dir = ::testing::TempDir() + "/methods_roundtrip_" + method;
    std::filesystem::create_directories(dir);
    m.save(dir);
    MethodSet b(*model);
    b.attach_folders({dir});
    ASSERT_EQ(a.params().size(), b.params().size());
    EXPECT_EQ(a.params().values().to_vector(), b.params().values().to_vector());
  }
}

// Generation: a prefix (or virtual tokens) with a KV cache, fed one token at a time, gives the
// logits of the full forward over the whole sequence.
TEST(Methods, KvCacheWithPrefixOrPromptGivesTheFullForwardLogits) {
  auto model = load_model(tiny_dir("qwen2"));
  const HFConfig& c = model->config();
  for (const char* method : {"prefix", "prompt"}) {
    SCOPED_TRACE(method);
    MethodSet set(*model);
    Method& m = add(set, method, R"({"num_virtual_tokens": 3})");
    set.allocate();
    Rng rng(2);
    m.initialize(rng, nullptr);
    NoGradGuard no_grad;
    const std::vector<int32_t> ids = {4, 8, 15, 16, 23, 42};
    const int64_t T = int64_t(ids.size()), P = std::string(method) == "prompt" ? 3 : 0;
    ModelInputs all;
    all.input_ids = Tensor::from_vector_i32(ids, {1, T});
    const std::vector<float> full =
        model->logits(model->forward(all, {.hooks = set.hooks()}))->value.to_vector();
    KVCache cache(c.num_hidden_layers, 1, T + P, c.num_key_value_heads, c.head_dim);
    std::vector<float> stepped;
    for (int64_t t = 0; t < T; ++t) {
      ModelInputs one;
      // The first step takes two tokens, then one at a time.
      if (t == 1) continue;
      const std::vector<int32_t> part =
          t == 0 ? std::vector<int32_t>{ids[0], ids[1]} : std::vector<int32_t>{ids[size_t(t)]};
      one.input_ids = Tensor::from_vector_i32(part, {1, int64_t(part.size())});
      const std::vector<float> l =
          model->logits(model->forward(one, {.hooks = set.hooks(), .cache = &cache}))
              ->value.to_vector();
      stepped.insert(stepped.end(), l.begin(), l.end());
    }
    ASSERT_EQ(stepped.size(), full.size());
    for (size_t i = 0; i < full.size(); ++i) ASSERT_NEAR(stepped[i], full[i], 1e-4) << i;
  }
}

// One ForwardContext decides "training" for the model and every method: BERT's hidden dropout,
// LoRA's dropout and the P-Tuning LSTM's dropout all follow ctx.training, whether or not a tape
// records (a tape without training is a gradient check; training without a tape is still
// training).
TEST(Methods, TheForwardContextAloneDecidesDropout) {
  auto model = load_model(tiny_dir("bert"));
  MethodSet set(*model);
  add(set, "lora", R"({"r": 2, "lora_dropout": 0.3})");
  add(set, "ptuning",
      R"({"num_virtual_tokens": 2, "encoder_hidden_size": 6, "encoder_reparameterization_type": "LSTM", "encoder_dropout": 0.5})");
  set.allocate();
  Rng init(4);
  set.initialize(init, nullptr);
  for (const auto& e : set.params().entries())  // LoRA B = 0 at init would hide its dropout
    if (e.name.find("lora_B") != std::string::npos) fill_normal(e.var->value, init, 0, 0.5f);
  ModelInputs in;
  in.input_ids = Tensor::from_vector_i32({5, 9, 2, 7, 11, 3}, {2, 3});
  auto logits = [&](bool training, bool taped, Rng* rng) {
    std::optional<Tape> tape;
    std::optional<NoGradGuard> no_grad;
    if (taped)
      tape.emplace();
    else
      no_grad.emplace();
    ForwardContext ctx{.hooks = set.hooks(), .training = training, .dropout_rng = rng};
    return model->logits(model->forward(in, ctx))->value.to_vector();
  };
  Rng a(7), b(7);
  const std::vector<float> eval = logits(false, false, &a);
  EXPECT_EQ(logits(false, true, &a), eval) << "a recording tape alone must not turn dropout on";
  EXPECT_EQ(a.position(), 0u) << "evaluation must not draw from the dropout RNG";
  const std::vector<float> trained = logits(true, false, &a);
  EXPECT_NE(trained, eval) << "training without a tape must still drop";
  EXPECT_GT(a.position(), 0u);
  EXPECT_EQ(logits(true, true, &b), trained) << "the same draws, tape or not";
}

// A stack saves one sub-folder per method and adapter_stack.json; attaching the stack folder
// gives back every method, in order, bit-identically.
TEST(Methods, StackFolderSavesEachMethodAndLoadsBack) {
  auto model = load_model(tiny_dir("qwen2"));
  MethodSet a(*model);
  add(a, "lora", R"({"r": 2})");
  add(a, "prefix",
      R"({"num_virtual_tokens": 3, "prefix_projection": true, "encoder_hidden_size": 8})");
  a.allocate();
  Rng rng(11);
  a.initialize(rng, nullptr);
  for (const auto& e : a.params().entries()) fill_normal(e.var->value, rng, 0, 0.3f);
  const std::string dir = ::testing::TempDir() + "/methods_stack";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  a.save(dir);
  EXPECT_TRUE(std::filesystem::exists(dir + "/lora/adapter_config.json"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/prefix/prompt_encoder.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/adapter_config.json"));
  EXPECT_EQ(adapter_folders(dir), (std::vector<std::string>{dir + "/lora", dir + "/prefix"}));
  MethodSet b(*model);
  b.attach_folders({dir});
  ASSERT_EQ(b.methods().size(), 2u);
  EXPECT_EQ(a.params().values().to_vector(), b.params().values().to_vector());
  // A single method saved over it (--overwrite) leaves no stale stack behind.
  a.methods()[0]->save(dir);
  MethodSet one(*model);
  one.add(*find_method("prefix"), nlohmann::json::parse(R"({"peft_type": "PREFIX_TUNING"})"),
          "test");
  one.allocate();
  one.save(dir);
  EXPECT_EQ(adapter_folders(dir), std::vector<std::string>{dir});
}

TEST(Methods, MethodListsAndFlagsOfAStack) {
  const auto stack = parse_method_list("lora, prefix");
  ASSERT_EQ(stack.size(), 2u);
  EXPECT_EQ(stack_label(stack), "lora+prefix");
  const auto configs = method_configs_from_flags(stack, {{"r", "4"}, {"num-virtual-tokens", "6"}});
  EXPECT_EQ(configs[0]["r"], 4);
  EXPECT_FALSE(configs[0].contains("num_virtual_tokens"));
  EXPECT_EQ(configs[1]["num_virtual_tokens"], 6);
  EXPECT_NE(error_of([] { parse_method_list("lora,lora"); }).find("named twice"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_method_list("lora,nope"); }).find("\"nope\" is not a method"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              method_configs_from_flags(stack, {{"encoder-dropout", "0.1"}});
            }).find("--encoder-dropout does not apply to --method lora+prefix"),
            std::string::npos);
}

// Continuing from a folder: method flags that agree pass (compared as the method writes them),
// one that disagrees is an error naming the flag, the folder and its value.
TEST(Methods, FlagsMustAgreeWithTheFolderContinued) {
  auto model = load_model(tiny_dir("qwen2"));
  const auto lora = parse_method_list("lora");
  const nlohmann::json cfg = nlohmann::json::parse(
      R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["v_proj", "q_proj"]})");
  const std::vector<std::string> dirs = {"/some/adapter"};
  check_flags_agree_with_folders(
      *model, lora, {cfg}, dirs,
      {{"r", "8"}, {"lora-alpha", "16.0"}, {"target-modules", "q_proj,v_proj"}});
  const std::string e = error_of([&] {
    check_flags_agree_with_folders(*model, lora, {cfg}, dirs, {{"r", "16"}});
  });
  EXPECT_NE(e.find("--r 16: /some/adapter/adapter_config.json has r = 8"), std::string::npos) << e;
  const auto pt = parse_method_list("ptuning");
  const nlohmann::json pcfg = nlohmann::json::parse(
      R"({"peft_type": "P_TUNING", "num_virtual_tokens": 4, "encoder_reparameterization_type": "LSTM"})");
  check_flags_agree_with_folders(*model, pt, {pcfg}, dirs,
                                 {{"encoder-reparameterization-type", "lstm"}});
  EXPECT_NE(
      error_of([&] {
        check_flags_agree_with_folders(*model, pt, {pcfg}, dirs, {{"num-virtual-tokens", "5"}});
      }).find("num_virtual_tokens = 4"),
      std::string::npos);
  EXPECT_NE(error_of([&] {
              check_flags_agree_with_folders(*model, pt, {pcfg}, dirs, {{"r", "4"}});
            }).find("--r does not apply"),
            std::string::npos);
}

// STYLE.md: the CLI never branches on a method; a method is a registry row.
TEST(Methods, CliNamesNoMethod) {
  const std::regex named("\"(lora|prompt|ptuning|ptuning-v2|prefix|LORA|PREFIX_TUNING)\"");
  for (const auto& f :
       std::filesystem::directory_iterator(std::string(PEFT_SOURCE_DIR) + "/src/cli")) {
    std::ifstream in(f.path());
    std::stringstream text;
    text << in.rdbuf();
    const std::string s = text.str();
    EXPECT_FALSE(std::regex_search(s, named)) << f.path();
  }
}

}  // namespace
}  // namespace peft
