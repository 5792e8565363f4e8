// Bottleneck adapters (peft/bottleneck_adapter.cpp) and the torch checkpoint reader / writer they
// use (io/torch_pickle.cpp). AdapterHub itself is the reference in
// tests/python/test_peft_adapter.py; here: gradients against finite differences through whole
// tiny models, the identity init, file round trips, refused configs and refused pickles, and a
// CLI run whose loss falls and whose folder `peft merge` refuses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "cli/cli_run.h"
#include "finite_difference.h"
#include "io/files.h"
#include "io/hf_config.h"
#include "io/torch_pickle.h"
#include "models/init.h"
#include "models/model.h"
#include "models/registry.h"
#include "peft/method.h"
#include "testing.h"

namespace peft {
namespace {

std::string tiny_dir(const std::string& arch) {
  return testing::tiny_model_dir("adapter_tiny", arch, 21);
}

Method& add_adapter(MethodSet& set, const char* json) {
  nlohmann::json j = nlohmann::json::parse(json);
  j["peft_type"] = find_method("adapter")->peft_type;
  return set.add(*find_method("adapter"), j, "test config");
}

// Every adapter parameter (and learned / per-channel scalings), through whole tiny models, along
// a random direction: analytic directional derivative vs Richardson-extrapolated central
// differences of Σ ℓ (the f32 model evaluated at ±h and ±2h, combined in f64).
TEST(BottleneckAdapter, GradientsMatchFiniteDifferences) {
  struct Case {
    const char* arch;
    const char* json;
  };
  const Case cases[] = {
      {"bert", R"({"adapter_kind": "houlsby", "reduction_factor": 8})"},
      {"bert", R"({"adapter_kind": "pfeiffer", "reduction_factor": 4, "scaling": "channel"})"},
      {"bert",
       R"({"adapter_kind": "pfeiffer", "residual_before_ln": false, "non_linearity": "gelu"})"},
      {"qwen2", R"({"adapter_kind": "houlsby", "reduction_factor": 4, "scaling": "learned"})"},
      {"llama", R"({"adapter_kind": "pfeiffer", "reduction_factor": 8, "non_linearity": "tanh"})"},
      {"baichuan", R"({"adapter_kind": "pfeiffer", "residual_before_ln": "post_add"})"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.arch) + " " + c.json);
    auto model = load_model(tiny_dir(c.arch));
    MethodSet set(*model);
    Method& m = add_adapter(set, c.json);
    set.allocate();
    Rng rng(5);
    m.initialize(rng, nullptr);
    for (const auto& e : set.params().entries())  // O(1) values so every piece matters
      fill_normal(e.var->value, rng, e.name.ends_with("scaling") ? 1.0f : 0.0f, 0.3f);
    testing::expect_gradients_match_finite_differences(*model, set, testing::tiny_batch());
  }
}

// Houlsby places two adapters per layer, Pfeiffer one (after the FFN), leave_out none; per-layer
// reduction factors size each bottleneck; AdapterHub's key names.
TEST(BottleneckAdapter, PlacementAndShapes) {
  auto model = load_model(tiny_dir("bert"));
  const int64_t C = model->config().hidden_size, L = model->config().num_hidden_layers;
  ASSERT_GE(L, 2);
  MethodSet h(*model);
  add_adapter(h, R"({"adapter_kind": "houlsby", "reduction_factor": 8})");
  EXPECT_EQ(h.params().entries().size(), size_t(L * 2 * 4));
  EXPECT_TRUE(
      h.params().contains("bert.encoder.layer.0.attention.output.adapters.adapter."
                          "adapter_down.0.weight"));
  MethodSet p(*model);
  add_adapter(p, R"({"adapter_kind": "pfeiffer", "reduction_factor": {"0": 4, "default": 16},
                     "leave_out": [1], "name": "task"})");
  EXPECT_EQ(p.params().entries().size(), size_t((L - 1) * 4));
  const std::string key = "bert.encoder.layer.0.output.adapters.task.adapter_down.0.weight";
  ASSERT_TRUE(p.params().contains(key));
  p.allocate();
  EXPECT_EQ(p.params().get(key)->value.shape(), (Shape{C / 4, C}));
  auto decoder = load_model(tiny_dir("qwen2"));
  MethodSet d(*decoder);
  add_adapter(d, R"({"adapter_kind": "houlsby"})");
  EXPECT_TRUE(
      d.params().contains("model.layers.0.attention_adapters.adapters.adapter.adapter_up.bias"));
  EXPECT_TRUE(
      d.params().contains("model.layers.0.output_adapters.adapters.adapter.adapter_up.bias"));
}

// mam_adapter's zero up-projection makes every adapter exactly the identity.
TEST(BottleneckAdapter, MamInitLeavesLogitsExactlyUnchanged) {
  for (const char* arch : {"bert", "llama"})
    for (const char* kind : {"houlsby", "pfeiffer"}) {
      SCOPED_TRACE(std::string(arch) + " " + kind);
      auto model = load_model(tiny_dir(arch));
      const ModelInputs in = testing::tiny_batch();
      const std::vector<float> base = model->logits(model->forward(in))->value.to_vector();
      MethodSet set(*model);
      Method& m = add_adapter(
          set,
          fmt::format(R"({{"adapter_kind": "{}", "init_weights": "mam_adapter"}})", kind).c_str());
      set.allocate();
      Rng rng(1);
      m.initialize(rng, nullptr);
      EXPECT_EQ(model->logits(model->forward(in, {.hooks = set.hooks()}))->value.to_vector(), base);
    }
}

// The folder save() writes (adapter_config.json, adapter.safetensors, pytorch_adapter.bin) loads
// back bit-identically from either weight file, and holds AdapterHub's 33 config fields.
TEST(BottleneckAdapter, FolderRoundTripBothWeightFiles) {
  auto model = load_model(tiny_dir("llama"));
  MethodSet a(*model);
  Method& m = add_adapter(a, R"({"adapter_kind": "houlsby", "scaling": "channel"})");
  a.allocate();
  Rng rng(9);
  m.initialize(rng, nullptr);
  for (const auto& e : a.params().entries()) fill_normal(e.var->value, rng, 0, 1);
  const std::string dir = ::testing::TempDir() + "/adapter_roundtrip";
  std::filesystem::create_directories(dir);
  m.save(dir);
  const nlohmann::json cfg = read_json_file(dir + "/adapter_config.json");
  EXPECT_EQ(cfg["config"].size(), 33u);
  EXPECT_EQ(cfg["version"], "adapters.1.3.0");
  EXPECT_EQ(cfg["config"]["reduction_factor"], 16);
  EXPECT_EQ(cfg["config"]["non_linearity"], "swish");
  EXPECT_EQ(cfg["model_class"], "LlamaForCausalLM");
  for (bool keep_safetensors : {true, false}) {
    if (!keep_safetensors) std::filesystem::remove(dir + "/adapter.safetensors");
    MethodSet b(*model);
    b.attach_folders({dir});
    ASSERT_EQ(a.params().size(), b.params().size());
    EXPECT_EQ(a.params().values().to_vector(), b.params().values().to_vector());
  }
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(TorchPickle, WriterReaderRoundTrip) {
  const std::string dir = ::testing::TempDir() + "/pickle_rt";
  std::filesystem::create_directories(dir);
  const Tensor a = Tensor::from_vector({1, -2, 3.5f, 4, 5, 6}, {2, 3});
  const Tensor s = Tensor::from_vector({7}, {1});
  write_torch_checkpoint(dir + "/x.bin", {{"a.weight", a}, {"s", s}});
  const auto back = read_torch_checkpoint(dir + "/x.bin");
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back.at("a.weight").shape(), a.shape());
  EXPECT_EQ(back.at("a.weight").to_vector(), a.to_vector());
  EXPECT_EQ(back.at("s").to_vector(), s.to_vector());
}

void expect_refused(const std::string& name, const std::string& pkl, const std::string& needle) {
  SCOPED_TRACE(name);
  const std::string dir = ::testing::TempDir() + "/pickle_bad";
  std::filesystem::create_directories(dir);
  // A valid archive whose data.pkl is replaced by `pkl` of the same length (padded with STOP's
  // tail ignored): simpler to build one with the writer and patch the pickle bytes in place.
  write_torch_checkpoint(dir + "/base.bin", {{"t", Tensor::from_vector({1}, {1})}});
  std::string z = read_text_file(dir + "/base.bin");
  const size_t at = z.find("\x80\x02}(");
  ASSERT_NE(at, std::string::npos);
  const size_t end = z.find("u.", at) + 2;
  const size_t len = end - at;
  ASSERT_LE(pkl.size(), len);
  std::string padded = pkl + std::string(len - pkl.size(), '.');
  z.replace(at, len, padded);
  write_bytes(dir + "/bad.bin", z);
  try {
    read_torch_checkpoint(dir + "/bad.bin");
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(TorchPickle, RefusesAnythingButPlainTensors) {
  expect_refused("os.system",
                 "\x80\x02"
                 "cos\nsystem\n)R.",
                 "os.system");
  expect_refused("builtins.eval",
                 "\x80\x02"
                 "cbuiltins\neval\n.",
                 "builtins.eval");
  expect_refused("BUILD opcode", "\x80\x02}b.", "opcode 0x62");
  expect_refused("INST opcode", "\x80\x02i__main__\nX\n.", "opcode 0x69");
  expect_refused("not a dict", "\x80\x02K\x05.", "no dict");
  expect_refused("unbalanced", "\x80\x02s.", "stack");
  const std::string dir = ::testing::TempDir() + "/pickle_bad";
  write_bytes(dir + "/junk.bin", "not a zip at all, just some words");
  EXPECT_THROW(read_torch_checkpoint(dir + "/junk.bin"), Error);
}

TEST(BottleneckAdapter, RefusedConfigsNameTheKey) {
  auto model = load_model(tiny_dir("bert"));
  auto refused = [&](const char* json, const char* needle) {
    SCOPED_TRACE(json);
    MethodSet set(*model);
    try {
      add_adapter(set, json);
      FAIL() << "accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  refused(R"({"adapter_kind": "compacter"})", "houlsby");
  refused(R"({"reduction_factor": 0})", "reduction_factor");
  refused(R"({"non_linearity": "softsign"})", "non_linearity");
  refused(R"({"is_parallel": true})", "is_parallel");
  refused(R"({"ln_after": true})", "ln_after");
  refused(R"({"original_ln_after": false})", "original_ln_after");
  refused(R"({"leave_out": [7]})", "leave_out");
  refused(R"({"reduction_factor": {"0": 4}})", "default");
  refused(R"({"scaling": "sometimes"})", "scaling");
}

// The CLI: a short Pfeiffer run on a tiny BERT lowers the loss; `peft info` reads the folder;
// `peft merge` says adapters cannot be merged and writes nothing.
TEST(BottleneckAdapterCli, TrainLowersLossAndMergeRefuses) {
  const std::string dir = testing::fresh_dir("adapter_cli_" + std::to_string(::getpid()));
  ASSERT_EQ(
      testing::run_peft("init --arch llama --preset tiny --seed 2 --out " + dir + "/model").status,
      0);
  {
    std::ofstream f(dir + "/data.jsonl");
    for (int r = 0; r < 32; ++r) {
      nlohmann::json ids = nlohmann::json::array();
      for (int t = 0; t < 12; ++t) ids.push_back((r % 4) * 10 + t + 3);
      f << nlohmann::json{{"input_ids", ids}}.dump() << "\n";
    }
  }
  auto r =
      testing::run_peft("train --model " + dir + "/model --data " + dir +
                        "/data.jsonl --method adapter --adapter-kind pfeiffer --reduction-factor 4 "
                        "--batch-size 8 --max-steps 40 --lr 3e-2 --seed 1 --json --out " +
                        dir + "/out");
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream metrics(dir + "/out/metrics.jsonl");
  std::vector<double> losses;
  for (std::string line; std::getline(metrics, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) losses.push_back(j["loss"].get<double>());
  }
  ASSERT_GE(losses.size(), 2u);
  EXPECT_LT(losses.back(), losses.front() - 0.3);  // 6.21 -> 5.61 when written
  EXPECT_TRUE(std::filesystem::exists(dir + "/out/pytorch_adapter.bin"));
  auto info = testing::run_peft("info " + dir + "/out --json");
  ASSERT_EQ(info.status, 0) << info.err;
  EXPECT_EQ(nlohmann::json::parse(testing::last_line(info.out))["method"], "adapter");
  auto merge = testing::run_peft("merge --model " + dir + "/model --adapter " + dir +
                                 "/out --out " + dir + "/merged");
  EXPECT_EQ(merge.status, 1);
  EXPECT_NE(merge.err.find("cannot be folded into the weights"), std::string::npos) << merge.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/merged/model.safetensors"));
}

// Stacking: a LoRA adapter and a bottleneck adapter attached together (--adapter twice) give the
// logits of the bottleneck adapter alone on the model with the LoRA merged into its weights; the
// stacked run differs from either adapter alone.
TEST(BottleneckAdapterCli, StackedWithLoraEqualsAdapterOnMergedModel) {
  const std::string dir = testing::fresh_dir("adapter_stack_" + std::to_string(::getpid()));
  ASSERT_EQ(
      testing::run_peft("init --arch llama --preset tiny --seed 4 --out " + dir + "/model").status,
      0);
  {
    std::ofstream f(dir + "/data.jsonl");
    for (int r = 0; r < 8; ++r) {
      nlohmann::json ids = nlohmann::json::array();
      for (int t = 0; t < 10; ++t) ids.push_back((r * 7 + t * 3) % 200 + 3);
      f << nlohmann::json{{"input_ids", ids}}.dump() << "\n";
    }
  }
  const std::string common =
      " --data " + dir + "/data.jsonl --batch-size 4 --max-steps 3 --lr 5e-2";
  auto lora = testing::run_peft("train --model " + dir + "/model --method lora --r 4" + common +
                                " --out " + dir + "/lora");
  ASSERT_EQ(lora.status, 0) << lora.err;
  auto adapter =
      testing::run_peft("train --model " + dir + "/model --method adapter --adapter-kind houlsby" +
                        common + " --out " + dir + "/adapter");
  ASSERT_EQ(adapter.status, 0) << adapter.err;
  // The closing line names what the method wrote.
  EXPECT_NE(adapter.err.find("adapter_config.json + adapter.safetensors + pytorch_adapter.bin"),
            std::string::npos)
      << adapter.err;
  EXPECT_NE(lora.err.find("adapter_config.json + adapter_model.safetensors"), std::string::npos)
      << lora.err;
  auto merged = testing::run_peft("merge --model " + dir + "/model --adapter " + dir +
                                  "/lora --out " + dir + "/merged");
  ASSERT_EQ(merged.status, 0) << merged.err;

  const ModelInputs in = testing::tiny_batch();
  auto logits = [&](const std::string& model_dir, const std::vector<std::string>& adapters) {
    auto model = load_model(model_dir);
    MethodSet set(*model);
    set.attach_folders(adapters);
    return model->logits(model->forward(in, {.hooks = set.hooks()}))->value.to_vector();
  };
  const std::vector<float> stacked = logits(dir + "/model", {dir + "/lora", dir + "/adapter"});
  const std::vector<float> on_merged = logits(dir + "/merged", {dir + "/adapter"});
  const std::vector<float> lora_only = logits(dir + "/model", {dir + "/lora"});
  const std::vector<float> adapter_only = logits(dir + "/model", {dir + "/adapter"});
  ASSERT_EQ(stacked.size(), on_merged.size());
  float worst = 0, scale = 0, vs_lora = 0, vs_adapter = 0;
  for (size_t i = 0; i < stacked.size(); ++i) {
    worst = std::max(worst, std::fabs(stacked[i] - on_merged[i]));
    scale = std::max(scale, std::fabs(on_merged[i]));
    vs_lora = std::max(vs_lora, std::fabs(stacked[i] - lora_only[i]));
    vs_adapter = std::max(vs_adapter, std::fabs(stacked[i] - adapter_only[i]));
  }
  EXPECT_LE(worst, 1e-5f * scale) << "stacked vs adapter on the merged model";
  EXPECT_GT(vs_lora, 1e-3f * scale) << "the bottleneck adapter must matter";
  EXPECT_GT(vs_adapter, 1e-3f * scale) << "the LoRA adapter must matter";
}

}  // namespace
}  // namespace peft
