// Learnable toy tasks through the binary: the label is a visible word of the text ("good" /
// "bad" among filler words), so PET (verbalizer good / bad) and a seq-cls head both learn it from
// 40 examples on a tiny random BERT; and every method trains under PET and seq-cls (the loss of
// a fixed full batch falls). Seeded; a few seconds with one thread.
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/cli_run.h"

namespace peft {
namespace {

using peft::testing::fresh_dir;
using peft::testing::last_line;
using peft::testing::run_peft;

const char* kVerbalizer = R"('{"negative": "bad", "positive": "good"}')";
const char* kPattern = R"("{text} It was {mask}.")";

void write_toy(const std::string& path, int n, uint32_t seed) {
  static const char* fill[] = {"the",   "a",     "movie", "film", "story", "plot",
                               "actor", "scene", "music", "time", "day",   "night",
                               "house", "car",   "dog",   "cat",  "tree",  "book"};
  std::mt19937 rng(seed);
  std::ofstream f(path);
  for (int i = 0; i < n; ++i) {
    const bool positive = rng() % 2;
    std::vector<std::string> words;
    const int len = 3 + int(rng() % 5);
    for (int w = 0; w < len; ++w) words.push_back(fill[rng() % 18]);
    words.insert(words.begin() + long(rng() % (words.size() + 1)), positive ? "good" : "bad");
    std::string text;
    for (const std::string& w : words) text += (text.empty() ? "" : " ") + w;
    f << nlohmann::json{{"text", text}, {"label", positive ? "positive" : "negative"}}.dump()
      << "\n";
  }
}

class ToyTask : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // ctest runs each test in its own process, two at a time: one folder per process (a shared
    // one was wiped by the other test's set-up mid-run).
    dir_ = fresh_dir("toy_tasks_" + std::to_string(::getpid()));
    write_toy(dir_ + "/train.jsonl", 40, 1);
    write_toy(dir_ + "/test.jsonl", 100, 2);
    const auto r =
        run_peft("init --arch bert --preset tiny --seed 1 --out " + dir_ + "/bert --vocab-from " +
                 PEFT_ASSETS_DIR + "/tokenizers/bert-base-uncased");
    ASSERT_EQ(r.status, 0) << r.err;
  }
  static std::string task_flags(const std::string& task) {
    return "--model " + dir_ + "/bert --task " + task +
           (task == "pet" ? std::string(" --pattern ") + kPattern + " --verbalizer " + kVerbalizer
                          : std::string()) +
           " --data " + dir_ + "/train.jsonl --seed 1 --overwrite --json";
  }
  static std::string dir_;
};
std::string ToyTask::dir_;

TEST_F(ToyTask, PetAndSeqClsReachNinetyPercentFromFortyExamples) {
  for (const std::string task : {"pet", "seq-cls"}) {
    const std::string out = dir_ + "/acc-" + task;
    const auto r =
        run_peft("train " + task_flags(task) + " --method lora --epochs 20 " +
                 "--batch-size 8 --lr 1e-2 --eval-data " + dir_ + "/test.jsonl --out " + out);
    ASSERT_EQ(r.status, 0) << r.err;
    const auto j = nlohmann::json::parse(last_line(r.out));
    EXPECT_GE(j["eval_accuracy"].get<double>(), 0.9) << task << ": " << r.out;
    if (task != "pet") continue;
    // peft eval with the pattern scores the same records as the trainer's evaluation and as
    // peft classify: the same accuracy, plus macro-F1.
    const std::string pet = std::string(" --pattern ") + kPattern + " --verbalizer " + kVerbalizer;
    const auto e = run_peft("eval --model " + dir_ + "/bert --adapter " + out + pet + " --data " +
                            dir_ + "/test.jsonl --json");
    ASSERT_EQ(e.status, 0) << e.err;
    const auto ej = nlohmann::json::parse(last_line(e.out));
    EXPECT_DOUBLE_EQ(ej["accuracy"].get<double>(), j["eval_accuracy"].get<double>()) << e.out;
    EXPECT_NEAR(ej["loss"].get<double>(), j["eval_loss"].get<double>(), 1e-6) << e.out;
    EXPECT_EQ(ej["tokens"].get<int64_t>(), 100);
    EXPECT_GT(ej["macro_f1"].get<double>(), 0.85) << e.out;
    const auto c = run_peft("classify --model " + dir_ + "/bert --adapter " + out + pet +
                            " --data " + dir_ + "/test.jsonl --json");
    ASSERT_EQ(c.status, 0) << c.err;
    const auto cj = nlohmann::json::parse(last_line(c.out));
    EXPECT_DOUBLE_EQ(cj["accuracy"].get<double>(), ej["accuracy"].get<double>());
    EXPECT_DOUBLE_EQ(cj["macro_f1"].get<double>(), ej["macro_f1"].get<double>());
    // The pattern without its verbalizer is refused.
    const auto bad = run_peft("eval --model " + dir_ + "/bert --pattern " + kPattern + " --data " +
                              dir_ + "/test.jsonl");
    EXPECT_EQ(bad.status, 1);
    EXPECT_NE(bad.err.find("--pattern needs --verbalizer"), std::string::npos) << bad.err;
  }
}

// --method full --task seq-cls writes a *ForSequenceClassification folder; peft classify scores
// with that folder's head alone (the accuracy the training reported), and training continues
// from it (LoRA, lr ~0: the same evaluation), and a full run on it writes such a folder again.
TEST_F(ToyTask, FullSeqClsFolderClassifiesAndTrainsOn) {
  const std::string full = dir_ + "/seq-cls-full", test = dir_ + "/test.jsonl";
  const auto r = run_peft("train " + task_flags("seq-cls") +
                          " --method full --epochs 10 --batch-size 8 --lr 1e-3 --eval-data " +
                          test + " --out " + full);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(last_line(r.out));
  const auto c = run_peft("classify --model " + full + " --data " + test + " --json");
  ASSERT_EQ(c.status, 0) << c.err;
  const auto cj = nlohmann::json::parse(last_line(c.out));
  EXPECT_DOUBLE_EQ(cj["accuracy"].get<double>(), j["eval_accuracy"].get<double>()) << c.out;
  EXPECT_NEAR(cj["loss"].get<double>(), j["eval_loss"].get<double>(), 1e-6) << c.out;
  for (const std::string method : {"lora", "full"}) {
    const std::string out = dir_ + "/seq-cls-on-" + method;
    const auto t = run_peft("train --model " + full + " --task seq-cls --data " + dir_ +
                            "/train.jsonl --eval-data " + test + " --method " + method +
                            " --max-steps 1 --lr 1e-30 --overwrite --json --out " + out);
    ASSERT_EQ(t.status, 0) << method << ": " << t.err;
    const auto tj = nlohmann::json::parse(last_line(t.out));
    EXPECT_DOUBLE_EQ(tj["eval_accuracy"].get<double>(), j["eval_accuracy"].get<double>());
    EXPECT_NEAR(tj["eval_loss"].get<double>(), j["eval_loss"].get<double>(), 1e-5) << method;
  }
  const auto again =
      run_peft("classify --model " + dir_ + "/seq-cls-on-full --data " + test + " --json");
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(last_line(again.out))["accuracy"].get<double>(),
                   j["eval_accuracy"].get<double>());
  // An MLM folder has no head of its own: without --pattern or --adapter classify refuses it.
  const auto plain = run_peft("classify --model " + dir_ + "/bert --data " + test);
  EXPECT_EQ(plain.status, 1);
  EXPECT_NE(plain.err.find("*ForSequenceClassification"), std::string::npos) << plain.err;
}

// A seq-cls head trained with a stack of methods is saved with the first method's folder (as
// that adapter's modules_to_save) and classify takes the stack folder: the same accuracy as the
// trainer's own evaluation.
TEST_F(ToyTask, SeqClsHeadTrainsWithAStackAndClassifyReadsIt) {
  const std::string out = dir_ + "/stack-seq-cls";
  const auto r = run_peft("train " + task_flags("seq-cls") +
                          " --method lora,prefix --num-virtual-tokens 4 --max-steps 3"
                          " --batch-size 8 --lr 1e-2 --eval-data " +
                          dir_ + "/test.jsonl --out " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(last_line(r.out));
  std::ifstream cfg(out + "/lora/adapter_config.json");
  const auto config = nlohmann::json::parse(cfg);
  EXPECT_EQ(config["task_type"], "SEQ_CLS");
  EXPECT_TRUE(config.contains("id2label"));
  const auto c = run_peft("classify --model " + dir_ + "/bert --adapter " + out + " --data " +
                          dir_ + "/test.jsonl --json");
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(last_line(c.out))["accuracy"].get<double>(),
                   j["eval_accuracy"].get<double>());
}

// A seq-cls LoRA run continued with --adapter starts from the saved adapter and head (the
// folder's modules_to_save): at lr ~0 its evaluation is the first run's, and classify on the
// continued folder agrees.
TEST_F(ToyTask, SeqClsLoraRunContinuesFromItsAdapterAndHead) {
  const std::string first = dir_ + "/seq-cls-lora", next = dir_ + "/seq-cls-lora-next";
  const std::string test = dir_ + "/test.jsonl";
  const auto r = run_peft("train " + task_flags("seq-cls") +
                          " --method lora --epochs 3 --batch-size 8 --lr 1e-2 --eval-data " + test +
                          " --out " + first);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(last_line(r.out));
  const auto t = run_peft("train " + task_flags("seq-cls") + " --adapter " + first +
                          " --max-steps 1 --lr 1e-30 --eval-data " + test + " --out " + next);
  ASSERT_EQ(t.status, 0) << t.err;
  const auto tj = nlohmann::json::parse(last_line(t.out));
  EXPECT_DOUBLE_EQ(tj["eval_accuracy"].get<double>(), j["eval_accuracy"].get<double>());
  EXPECT_NEAR(tj["eval_loss"].get<double>(), j["eval_loss"].get<double>(), 1e-5);
  const auto c = run_peft("classify --model " + dir_ + "/bert --adapter " + next + " --data " +
                          test + " --json");
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(last_line(c.out))["accuracy"].get<double>(),
                   j["eval_accuracy"].get<double>());
}

TEST_F(ToyTask, EveryMethodLowersTheLossUnderPetAndSeqCls) {
  struct Case {
    std::string task, method, lr;
  };
  const std::vector<Case> cases = {
      {"pet", "full", "1e-3"},        {"pet", "lora", "1e-2"},
      {"pet", "prompt", "0.3"},       {"pet", "prefix", "0.1"},
      {"pet", "adapter", "1e-2"},     {"pet", "ptuning-v2", "0.1"},
      {"seq-cls", "full", "1e-3"},    {"seq-cls", "lora", "1e-2"},
      {"seq-cls", "prompt", "3e-3"},  {"seq-cls", "prefix", "3e-3"},
      {"seq-cls", "adapter", "3e-3"}, {"seq-cls", "ptuning-v2", "3e-3"},
  };
  for (const Case& c : cases) {
    const std::string out = dir_ + "/loss-" + c.task + "-" + c.method;
    const auto r = run_peft("train " + task_flags(c.task) + " --method " + c.method +
                            " --max-steps 40 --batch-size 40 --lr " + c.lr + " --out " + out);
    ASSERT_EQ(r.status, 0) << c.task << " " << c.method << ": " << r.err;
    std::ifstream f(out + "/metrics.jsonl");
    std::vector<double> losses;
    for (std::string line; std::getline(f, line);)
      losses.push_back(nlohmann::json::parse(line)["loss"].get<double>());
    ASSERT_EQ(losses.size(), 40u) << c.task << " " << c.method;
    const double last = (losses[37] + losses[38] + losses[39]) / 3;
    EXPECT_LT(last, losses[0]) << c.task << " " << c.method;
  }
}

}  // namespace
}  // namespace peft
