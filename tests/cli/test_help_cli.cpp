// The CLI explains itself: usage in workflow order, help per command (groups, defaults, ranges),
// "did you mean" for mistyped commands and flags, range errors in words, --version, --model in
// every command that takes a model, and the loss plot's title, markers and tick labels.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "cli_run.h"

namespace peft {
namespace {
using testing::fresh_dir;
using testing::read_all;
using testing::run_peft;

// The commands `peft help` lists, in its order.
std::vector<std::string> listed_commands(const std::string& usage) {
  std::vector<std::string> names;
  std::istringstream in(usage.substr(usage.find("Commands:\n") + 10));
  for (std::string line; std::getline(in, line) && line.rfind("  ", 0) == 0;)
    names.push_back(line.substr(2, line.find(' ', 2) - 2));
  return names;
}

TEST(HelpCli, BarePeftPrintsUsageAndExitsTwo) {
  const auto r = run_peft("");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("Usage: peft <command>"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("peft <command> --help"), std::string::npos) << r.err;
}

TEST(HelpCli, HelpListsTheCommandsInWorkflowOrder) {
  for (const char* args : {"help", "--help"}) {
    SCOPED_TRACE(args);
    const auto r = run_peft(args);
    ASSERT_EQ(r.status, 0) << r.err;
    const std::vector<std::string> names = listed_commands(r.out);
    auto pos = [&](const std::string& n) {
      return std::find(names.begin(), names.end(), n) - names.begin();
    };
    const std::vector<std::string> workflow{"init",  "info", "tokenize", "detokenize",
                                            "train", "eval", "generate", "merge"};
    for (size_t i = 0; i < workflow.size(); ++i) {
      ASSERT_LT(pos(workflow[i]), long(names.size())) << workflow[i] << " missing:\n" << r.out;
      if (i > 0) {
        EXPECT_LT(pos(workflow[i - 1]), pos(workflow[i])) << r.out;
      }
    }
    EXPECT_EQ(pos("model-oracle"), long(names.size())) << "hidden test tool listed";
    EXPECT_NE(r.out.find("peft <command> --help"), std::string::npos);
  }
}

TEST(HelpCli, HelpCommandShowsThatCommandsFlags) {
  const auto r = run_peft("help train");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, run_peft("train --help").out);
  for (const char* text : {"--epochs", "--lora-alpha", "Data:", "Model:", "LoRA:", "Optimisation:",
                           "Output:", "--model DIR", "--data FILE", "--out DIR", "[default: 1]",
                           "[default: lora]", "(≥ 1)", "See 'peft help'"})
    EXPECT_NE(r.out.find(text), std::string::npos) << text << "\n" << r.out;
}

// Every numeric flag of every listed command states its range in the help ("INT (≥ 1)").
TEST(HelpCli, EveryNumericFlagHasARange) {
  for (const std::string& command : listed_commands(run_peft("help").out)) {
    if (command == "help" || command == "version") continue;
    SCOPED_TRACE(command);
    const auto r = run_peft("help " + command);
    ASSERT_EQ(r.status, 0) << r.err;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) {
      const std::smatch m = [&] {
        std::smatch s;
        std::regex_search(line, s, std::regex(R"(^\s+(--[a-z0-9-]+) (INT|UINT|FLOAT)\b(.?))"));
        return s;
      }();
      if (m.empty()) continue;
      EXPECT_EQ(m[3].str(), " ") << line;
      EXPECT_NE(line.find(m[2].str() + " ("), std::string::npos) << "no range: " << line;
    }
  }
}

TEST(HelpCli, UnknownCommandSuggestsTheNearest) {
  auto r = run_peft("trian --model m");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "peft: error: unknown command 'trian'; did you mean 'train'?\n");
  r = run_peft("genrate");
  EXPECT_EQ(r.err, "peft: error: unknown command 'genrate'; did you mean 'generate'?\n");
  r = run_peft("help evl");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "peft: error: unknown command 'evl'; did you mean 'eval'?\n");
  r = run_peft("frobnicate");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err.find("did you mean"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("unknown command 'frobnicate'"), std::string::npos) << r.err;
}

TEST(HelpCli, UnknownFlagSuggestsTheNearest) {
  auto r = run_peft("train --model m --data d --out o --epoch 2");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err,
            "peft: error: unknown flag '--epoch' for 'peft train'; did you mean '--epochs'?\n");
  r = run_peft("generate --model m --prompt hi --temprature=0.5");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("did you mean '--temperature'?"), std::string::npos) << r.err;
  r = run_peft("eval --model m --data d --frobnicate");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err,
            "peft: error: unknown flag '--frobnicate' for 'peft eval' (see 'peft eval --help')\n");
}

TEST(HelpCli, RangeErrorsSayTheRangeInWords) {
  const std::string train = "train --model m --data d --out o ";
  const std::vector<std::pair<std::string, std::string>> cases{
      {train + "--epochs 0", "--epochs must be ≥ 1 (found 0)"},
      {train + "--r 0", "--r must be ≥ 1 (found 0)"},
      {train + "--batch-size 1.5", "--batch-size must be a whole number ≥ 1 (found '1.5')"},
      {train + "--epochs 2.0", "--epochs must be a whole number ≥ 1 (found '2.0')"},
      {train + "--lr 0", "--lr must be > 0 (found 0)"},
      {train + "--lr fast", "--lr must be a number > 0 (found 'fast')"},
      {train + "--lora-dropout 1", "--lora-dropout must be ≥ 0 and < 1 (found 1)"},
      {train + "--weight-decay -0.1", "--weight-decay must be ≥ 0 (found -0.1)"},
      {train + "--threads -2", "--threads must be ≥ 0 (found -2)"},
      {"eval --model m --data d --batch-size 0", "--batch-size must be ≥ 1 (found 0)"},
      {"generate --model m --prompt hi --temperature 0", "--temperature must be > 0 (found 0)"},
      {"generate --model m --prompt hi --top-p 1.5", "--top-p must be between 0 and 1 (found 1.5)"},
      {"generate --model m --prompt hi --max-new-tokens 0",
       "--max-new-tokens must be between 1 and 1048576 (found 0)"},
      {"init --arch qwen2 --preset tiny --out o --seed -1", "--seed must be ≥ 0 (found -1)"},
  };
  for (const auto& [args, message] : cases) {
    SCOPED_TRACE(args);
    const auto r = run_peft(args);
    EXPECT_EQ(r.status, 2);
    EXPECT_EQ(r.err, "peft: error: " + message + "\n");
  }
}

TEST(HelpCli, YamlValuesGetTheSameRangeChecks) {
  const std::string dir = fresh_dir("help_cli_yaml_" + std::to_string(::getpid()));
  std::ofstream(dir + "/run.yaml") << "epochs: 0\n";
  const auto r = run_peft("train --model m --data d --out o --config " + dir + "/run.yaml");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "peft: error: --epochs must be ≥ 1 (found 0)\n");
}

TEST(HelpCli, MissingFlagPointsAtTheCommandsHelp) {
  const auto r = run_peft("eval --data d");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "peft: error: --model is required (see 'peft eval --help')\n");
}

TEST(HelpCli, VersionPrintsAndExitsZero) {
  for (const char* args : {"--version", "version"}) {
    const auto r = run_peft(args);
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out.rfind("peft.cpp ", 0), 0u) << r.out;
  }
}

class HelpCliModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fresh_dir("help_cli_" + std::to_string(::getpid()));
    const std::string demo = std::string(PEFT_SOURCE_DIR) + "/data/demo";
    const auto r = run_peft("init --arch qwen2 --preset tiny --seed 1 --vocab-from " + demo +
                            " --out " + dir_ + "/tiny-qwen");
    ASSERT_EQ(r.status, 0) << r.err;
  }
  static std::string dir_;
};
std::string HelpCliModel::dir_;

// `peft info DIR` (the contract) and `peft info --model DIR` (as every other command) agree.
TEST_F(HelpCliModel, InfoTakesTheModelEitherWay) {
  const auto positional = run_peft("info " + dir_ + "/tiny-qwen --json");
  const auto flag = run_peft("info --model " + dir_ + "/tiny-qwen --json");
  ASSERT_EQ(positional.status, 0) << positional.err;
  ASSERT_EQ(flag.status, 0) << flag.err;
  EXPECT_EQ(positional.out, flag.out);
  const auto both = run_peft("info " + dir_ + "/tiny-qwen --model " + dir_ + "/other");
  EXPECT_EQ(both.status, 2);
}

// Every listed command that works on a model names it --model DIR.
TEST_F(HelpCliModel, EveryModelCommandTakesModelDir) {
  for (const char* command :
       {"info", "tokenize", "detokenize", "train", "eval", "generate", "merge"}) {
    const auto r = run_peft(std::string("help ") + command);
    EXPECT_NE(r.out.find("--model DIR"), std::string::npos) << command << "\n" << r.out;
  }
}

// loss.svg names the run (method and model), marks the evaluations, draws a smoothed train curve
// and never labels a tick "-0".
TEST_F(HelpCliModel, LossPlotNamesTheRunAndMarksEvaluations) {
  const std::string demo = std::string(PEFT_SOURCE_DIR) + "/data/demo";
  const std::string out = dir_ + "/run";
  const auto r = run_peft("train --model " + dir_ + "/tiny-qwen --data " + demo +
                          "/train.jsonl --eval-data " + demo + "/eval.jsonl --eval-every 2 " +
                          "--max-steps 6 --batch-size 2 --lr 1e-2 --out " + out + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string svg = read_all(out + "/loss.svg");
  const size_t title_at = svg.find("font-size=\"15\">");
  ASSERT_NE(title_at, std::string::npos) << svg;
  const std::string title = svg.substr(title_at, svg.find("</text>", title_at) - title_at);
  EXPECT_NE(title.find("lora"), std::string::npos) << title;
  EXPECT_NE(title.find("tiny-qwen"), std::string::npos) << title;
  EXPECT_EQ(svg.find(">-0<"), std::string::npos);
  EXPECT_NE(svg.find(">train (smoothed)</text>"), std::string::npos);
  const size_t markers = svg.find("<g class=\"markers\" fill=\"#d62728\">");
  ASSERT_NE(markers, std::string::npos) << svg;
  const std::string group = svg.substr(markers, svg.find("</g>", markers) - markers);
  size_t circles = 0;
  for (size_t at = group.find("<circle"); at != std::string::npos;
       at = group.find("<circle", at + 1))
    ++circles;
  EXPECT_EQ(circles, 3u);  // evaluations at steps 2, 4 and 6
}

}  // namespace
}  // namespace peft
