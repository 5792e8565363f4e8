// The public API through the shared library (libpeft.so) only: no engine header is included here.
#include <gtest/gtest.h>

#include <unistd.h>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "peft/peft.h"
#include "peft/peft.hpp"

namespace {

namespace fs = std::filesystem;
using peft::api::Model;

// A tiny random Qwen2 with the demo tokenizer, made once by `peft init`.
class Api : public ::testing::Test {
 protected:
  static fs::path root() {
    return fs::temp_directory_path() / ("peft_api_" + std::to_string(getpid()));
  }
  static std::string model_dir() { return (root() / "model").string(); }
  static std::string data() { return std::string(PEFT_SOURCE_DIR) + "/data/demo/train.jsonl"; }
  static void SetUpTestSuite() {
    fs::remove_all(root());
    fs::create_directories(root());
    const std::string cmd = std::string(PEFT_BINARY) +
                            " init --arch qwen2 --preset tiny --seed 3 --vocab-from " +
                            PEFT_SOURCE_DIR + "/data/demo --out " + model_dir() + " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() { fs::remove_all(root()); }
  std::string out(const std::string& name) const {
    return (root() / (std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
                      "_" + name))
        .string();
  }
};

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

TEST_F(Api, ErrorsAreOneExceptionTypeNamingTheFolder) {
  try {
    Model::load(out("absent"));
    FAIL() << "no error";
  } catch (const peft::api::Error& e) {
    EXPECT_NE(std::string(e.what()).find(out("absent")), std::string::npos) << e.what();
  }
  Model m = Model::load(model_dir());
  EXPECT_THROW(m.create_adapter("no-such-method"), peft::api::Error);
  EXPECT_THROW(m.create_adapter("lora", {{"num-virtual-tokens", "4"}}), peft::api::Error);
  EXPECT_THROW(m.save_adapter(out("a")), peft::api::Error);  // nothing attached
}

TEST_F(Api, LoraTrainsWithCallbacksSavesReloadsAndMergesToTheSameLogits) {
  Model m = Model::load(model_dir());
  const peft::api::ModelInfo info = m.info();
  EXPECT_EQ(info.model_type, "qwen2");
  EXPECT_TRUE(info.has_tokenizer);
  const std::vector<int32_t> ids = m.tokenize("What sound does a cow make?");
  ASSERT_FALSE(ids.empty());
  const std::vector<float> base = m.logits(ids);
  ASSERT_EQ(base.size(), ids.size() * size_t(info.vocab_size));

  m.create_adapter("lora", {{"r", "4"}, {"lora-alpha", "8"}, {"target-modules", "q_proj,v_proj"}});
  EXPECT_EQ(max_abs_diff(m.logits(ids), base), 0.0);  // B = 0 at init
  ASSERT_EQ(m.adapters().size(), 1u);
  EXPECT_EQ(m.adapters()[0].method, "lora");

  peft::api::TrainOptions t;
  t.data = data();
  t.max_steps = 5;
  t.lr = 1e-2f;
  std::vector<int64_t> steps;
  const peft::api::TrainResult r = m.train(t, [&](const peft::api::StepInfo& s) {
    steps.push_back(s.step);
    EXPECT_EQ(s.total_steps, 5);
    EXPECT_TRUE(std::isfinite(s.loss));
    return s.step < 3;  // cancel after the third step
  });
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(r.steps, 3);
  EXPECT_TRUE(r.cancelled);
  EXPECT_GT(r.trainable_params, 0);
  const std::vector<float> trained = m.logits(ids);
  EXPECT_GT(max_abs_diff(trained, base), 1e-4);

  const std::string adapter = out("adapter");
  m.save_adapter(adapter);
  Model again = Model::load(model_dir());
  again.load_adapters({adapter});
  EXPECT_EQ(max_abs_diff(again.logits(ids), trained), 0.0);

  const std::string merged = out("merged");
  const peft::api::MergeResult mr = again.merge(merged, "f32");
  EXPECT_EQ(mr.merged_modules, 2 * info.num_layers);
  EXPECT_LT(max_abs_diff(Model::load(merged).logits(ids), trained), 1e-4);

  const peft::api::EvalResult e = again.evaluate(data());
  EXPECT_GT(e.tokens, 0);
  EXPECT_NEAR(e.ppl, std::exp(e.loss), 1e-6 * e.ppl);
}

TEST_F(Api, GenerateStreamsPiecesThatMakeTheTextAndStopsOnRequest) {
  Model m = Model::load(model_dir());
  std::string streamed;
  peft::api::GenerateOptions g;
  g.max_new_tokens = 32;
  const peft::api::GenerateResult r = m.generate("Hello", g, [&](const std::string& piece) {
    streamed += piece;
    return true;
  });
  EXPECT_EQ(streamed, r.text);
  EXPECT_FALSE(r.ids.empty());
  int calls = 0;
  const peft::api::GenerateResult stopped =
      m.generate("Hello", g, [&](const std::string&) { return ++calls < 1; });
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(stopped.stopped);
  EXPECT_LT(stopped.ids.size(), r.ids.size());  // generation ended at the callback's "stop"
  EXPECT_EQ(std::vector<int32_t>(r.ids.begin(), r.ids.begin() + long(stopped.ids.size())),
            stopped.ids);
}

TEST_F(Api, GgufExportWritesAnAdapterOrAModel) {
  Model m = Model::load(model_dir());
  const peft::api::ExportResult model = m.export_gguf(out("model.gguf"));
  EXPECT_EQ(model.kind, "model");
  m.create_adapter("lora", {{"r", "4"}});
  const peft::api::ExportResult adapter = m.export_gguf(out("adapter.gguf"));
  EXPECT_EQ(adapter.kind, "adapter");
  EXPECT_EQ(adapter.tensors, 2 * m.info().num_layers);  // q_proj, v_proj per layer
  std::ifstream f(out("adapter.gguf"), std::ios::binary);
  char magic[4] = {};
  f.read(magic, 4);
  EXPECT_EQ(std::string(magic, 4), "GGUF");
  m.create_adapter("prompt", {{"num-virtual-tokens", "4"}});
  EXPECT_THROW(m.export_gguf(out("prompt.gguf")), peft::api::Error);  // no llama.cpp form
}

// Three labelled classification records (PET and seq-cls read the same).
std::string write_class_records(const std::string& path) {
  std::ofstream f(path);
  f << R"({"text": "a cow says moo", "label": "yes"})"
    << "\n"
    << R"({"text": "a cat is grey", "label": "no"})"
    << "\n"
    << R"({"text": "the dog", "label": "yes"})"
    << "\n";
  return path;
}

TEST_F(Api, PetClassifiesAndTrainsThroughTheSameObjective) {
  const std::string data = write_class_records(out("pet.jsonl"));
  Model m = Model::load(model_dir());
  peft::api::ClassifyOptions c;
  c.patterns = {"{text} It was {mask}."};
  c.verbalizer = R"({"yes": "moo", "no": "grey"})";
  const peft::api::ClassifyResult r = m.classify(data, c);
  ASSERT_EQ(r.labels, (std::vector<std::string>{"yes", "no"}));
  ASSERT_EQ(r.probabilities.size(), 3u);
  for (const auto& p : r.probabilities) EXPECT_NEAR(p[0] + p[1], 1.0, 1e-9);
  ASSERT_TRUE(r.accuracy.has_value());
  m.create_adapter("lora", {{"r", "4"}});
  peft::api::TrainOptions t;
  t.task = "pet";
  t.patterns = c.patterns;
  t.verbalizer = c.verbalizer;
  t.data = data;
  t.max_steps = 30;
  t.lr = 2e-2f;
  t.shuffle = false;
  m.train(t);
  EXPECT_EQ(*m.classify(data, c).accuracy, 1.0);  // three records, learnt
}

size_t count_lines(const std::string& path) {
  std::ifstream f(path);
  size_t n = 0;
  for (std::string line; std::getline(f, line);) n += !line.empty();
  return n;
}

TEST_F(Api, FullFineTuningWritesAModelFolderThatLoads) {
  peft::api::TrainOptions t;
  t.method = "full";
  t.data = data();
  t.max_steps = 2;
  t.lr = 1e-3f;
  t.out_dir = out("full");
  peft::api::TrainCallbacks cb;
  int64_t records = 0, steps = 0;
  peft::api::TrainStart start;
  cb.on_data = [&](const peft::api::TrainData& d) { records = d.records; };
  cb.on_start = [&](const peft::api::TrainStart& s) { start = s; };
  cb.on_step = [&](const peft::api::StepInfo&) { return ++steps > 0; };
  const peft::api::TrainResult r = peft::api::train(model_dir(), t, cb);
  EXPECT_GT(records, 0);
  EXPECT_EQ(start.records, records);
  EXPECT_EQ(start.method, "full");
  EXPECT_EQ(start.trainable_params, start.model_params);  // every weight
  EXPECT_EQ(steps, 2);
  EXPECT_EQ(r.method, "full");
  EXPECT_EQ(r.written, "config.json + model.safetensors");
  EXPECT_TRUE(fs::exists(fs::path(t.out_dir) / "metrics.jsonl"));
  Model base = Model::load(model_dir());
  Model tuned = Model::load(t.out_dir);  // a Hugging Face folder, with the tokenizer copied
  EXPECT_TRUE(tuned.info().has_tokenizer);
  const std::vector<int32_t> ids = base.tokenize("What sound does a cow make?");
  EXPECT_GT(max_abs_diff(tuned.logits(ids), base.logits(ids)), 1e-5);
  // A second run into the folder, now not empty, is refused before anything is loaded.
  EXPECT_THROW(peft::api::train(model_dir(), t), peft::api::Error);
}

TEST_F(Api, SeqClsRunClassifiesAsItsFinalEvaluationSays) {
  const std::string records = write_class_records(out("cls.jsonl"));
  peft::api::TrainOptions t;
  t.method = "lora";
  t.method_settings = {{"r", "4"}};
  t.task = "seq-cls";
  t.data = records;
  t.eval_data = records;
  t.max_steps = 3;
  t.lr = 1e-2f;
  t.out_dir = out("seq-cls");
  const peft::api::TrainResult r = peft::api::train(model_dir(), t);
  EXPECT_EQ(r.task, "seq-cls");
  ASSERT_TRUE(r.eval_accuracy.has_value());
  ASSERT_TRUE(r.eval_macro_f1.has_value());

  Model m = Model::load(model_dir());
  m.load_adapters({t.out_dir});  // the head is read from the adapter folder
  const peft::api::ClassifyResult c = m.classify(records, {});
  EXPECT_EQ(c.labels, (std::vector<std::string>{"no", "yes"}));  // the data's, sorted
  ASSERT_EQ(c.predictions.size(), 3u);
  ASSERT_EQ(c.labelled, 3);
  EXPECT_DOUBLE_EQ(*c.accuracy, *r.eval_accuracy);
  EXPECT_DOUBLE_EQ(*c.macro_f1, *r.eval_macro_f1);
  ASSERT_EQ(c.confusion.size(), 2u);

  m.clear_adapters();  // no head: neither an adapter nor a *ForSequenceClassification folder
  EXPECT_THROW(m.classify(records, {}), peft::api::Error);
}

TEST_F(Api, PetEnsembleWeighsItsPatternsAndWritesDistillationData) {
  const std::string records = write_class_records(out("pet.jsonl"));
  Model m = Model::load(model_dir());
  peft::api::ClassifyOptions one;
  one.patterns = {"{text} It was {mask}."};
  one.verbalizer = R"({"yes": "moo", "no": "grey"})";
  const peft::api::ClassifyResult single = m.classify(records, one);

  peft::api::ClassifyOptions two = one;
  two.patterns.push_back("Is it true? {mask}. {text}");
  two.pattern_weights = {1, 0};  // the second pattern counts for nothing
  two.distill_out = out("distill.jsonl");
  const peft::api::ClassifyResult ensemble = m.classify(records, two);
  EXPECT_EQ(ensemble.scores, single.scores);
  EXPECT_EQ(ensemble.predictions, single.predictions);
  ASSERT_EQ(ensemble.pattern_accuracies.size(), 2u);
  EXPECT_DOUBLE_EQ(ensemble.pattern_accuracies[0], *single.accuracy);
  EXPECT_EQ(count_lines(two.distill_out), 3u);  // every record, with its soft labels

  // One adapter per pattern: a fresh LoRA (B = 0) scores as the base does.
  const std::string adapter = out("lora");
  m.create_adapter("lora", {{"r", "4"}});
  m.save_adapter(adapter);
  m.clear_adapters();
  two.distill_out.clear();
  two.pattern_adapters = {adapter, adapter};
  EXPECT_EQ(m.classify(records, two).scores, single.scores);
  two.pattern_adapters = {adapter};  // one folder for two patterns
  EXPECT_THROW(m.classify(records, two), peft::api::Error);
}

TEST_F(Api, StackedAdaptersTrainSaveReloadAndContinue) {
  peft::api::TrainOptions t;
  t.method = "lora,prompt";
  t.method_settings = {{"r", "4"}, {"num-virtual-tokens", "4"}};
  t.data = data();
  t.max_steps = 2;
  t.lr = 1e-2f;
  t.out_dir = out("stack");
  std::string started;
  peft::api::TrainCallbacks cb;
  cb.on_start = [&](const peft::api::TrainStart& s) { started = s.method; };
  const peft::api::TrainResult r = peft::api::train(model_dir(), t, cb);
  EXPECT_EQ(r.method, started);
  EXPECT_NE(r.method.find("lora"), std::string::npos);
  EXPECT_NE(r.method.find("prompt"), std::string::npos);

  Model m = Model::load(model_dir());
  const std::vector<int32_t> ids = m.tokenize("What sound does a cow make?");
  const std::vector<float> base = m.logits(ids);
  m.load_adapters({t.out_dir});  // the run's folder attaches the whole stack
  const std::vector<peft::api::AdapterInfo> stack = m.adapters();
  ASSERT_EQ(stack.size(), 2u);
  EXPECT_EQ(stack[0].method, "lora");
  EXPECT_EQ(stack[1].method, "prompt");
  EXPECT_GT(max_abs_diff(m.logits(ids), base), 1e-5);

  peft::api::TrainOptions more = t;  // continue the stack: its methods come from the folder
  more.method.clear();
  more.method_settings.clear();
  more.adapter = t.out_dir;
  more.out_dir = out("stack-more");
  more.max_steps = 1;
  EXPECT_EQ(peft::api::train(model_dir(), more).method, r.method);
  more.out_dir = out("stack-wrong");
  more.method = "lora";  // the folder holds two methods
  EXPECT_THROW(peft::api::train(model_dir(), more), peft::api::Error);
}

int count_steps(int64_t, int64_t, double loss, double, void* user) {
  ++*static_cast<int*>(user);
  return std::isfinite(loss) ? 1 : 0;
}

TEST_F(Api, CApiReportsErrorsAndTrains) {
  peft_model* m = nullptr;
  EXPECT_EQ(peft_model_load(out("absent").c_str(), nullptr, &m), PEFT_ERROR);
  EXPECT_NE(std::string(peft_last_error()).find(out("absent")), std::string::npos);
  ASSERT_EQ(peft_model_load(model_dir().c_str(), nullptr, &m), PEFT_OK) << peft_last_error();
  EXPECT_EQ(peft_model_create_adapter(m, "lora", "{\"r\": 4", 1), PEFT_ERROR);
  EXPECT_NE(std::string(peft_last_error()).find("invalid JSON"), std::string::npos);
  ASSERT_EQ(peft_model_create_adapter(m, "lora", "{\"r\": \"4\"}", 1), PEFT_OK);
  peft_train_options o = peft_train_options_default();
  const std::string d = data();
  o.data = d.c_str();
  o.max_steps = 2;
  int calls = 0;
  double loss = 0;
  ASSERT_EQ(peft_model_train(m, &o, count_steps, &calls, &loss), PEFT_OK) << peft_last_error();
  EXPECT_EQ(calls, 2);
  EXPECT_GT(loss, 0);
  const int32_t ids[] = {1, 2, 3};
  std::vector<float> logits(3 * size_t(peft_model_vocab_size(m)));
  EXPECT_EQ(peft_model_logits(m, ids, 3, logits.data(), logits.size() - 1), PEFT_ERROR);
  EXPECT_EQ(peft_model_logits(m, ids, 3, logits.data(), logits.size()), PEFT_OK);
  char* text = nullptr;
  ASSERT_EQ(peft_model_generate(m, "Hi", 4, nullptr, nullptr, &text), PEFT_OK);
  ASSERT_NE(text, nullptr);
  peft_string_free(text);
  peft_model_free(m);
}

}  // namespace
