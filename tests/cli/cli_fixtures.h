// Shared by the end-to-end CLI tests (test_train_cli.cpp, test_reliability_cli.cpp): one tiny
// model made by `peft init` (qwen2 preset "tiny", the demo tokenizer) and the demo data, set up
// once per test suite.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <string>

#include "cli_run.h"

namespace peft::testing {

// Suite derives from TinyModelSuite<Suite> and names its folder prefix in a static member
// `folder` ("train_cli" → TempDir()/train_cli_PID/model).
template <typename Suite>
class TinyModelSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // ctest runs each test in its own process, two at a time: one folder per process.
    dir_ = fresh_dir(std::string(Suite::folder) + "_" + std::to_string(::getpid()));
    const std::string demo = std::string(PEFT_SOURCE_DIR) + "/data/demo";
    auto r = run_peft("init --arch qwen2 --preset tiny --seed 1 --vocab-from " + demo + " --out " +
                      dir_ + "/model");
    ASSERT_EQ(r.status, 0) << r.err;
    data_ = demo + "/train.jsonl";
    eval_ = demo + "/eval.jsonl";
    model_ = dir_ + "/model";
  }
  // The suite's folder, the demo's training and evaluation records, the tiny model's folder.
  static inline std::string dir_, data_, eval_, model_;
};

}  // namespace peft::testing
