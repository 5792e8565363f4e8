// `peft tokenize` / `peft detokenize` end to end: ids, JSON, exit codes (CLI.md).
#include <gtest/gtest.h>  // before cli_run.h, which uses ::testing::TempDir

#include "cli/cli_run.h"
#include "tok_testing.h"

namespace peft::testing {
namespace {

std::string model(const std::string& name) {
  return "--model " + tokenizer_dir(name);
}

TEST(TokenizeCli, IdsAndJson) {
  CommandResult r = run_peft("tokenize " + model("qwen2.5") + " --text 'Hello world' --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(last_line(r.out)),
            nlohmann::json::parse(R"({"ids": [9707, 1879]})"));
  r = run_peft("tokenize " + model("bert-base-uncased") + " --text 'Hello world'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "101 7592 2088 102\n");
  r = run_peft("tokenize " + model("bert-base-uncased") +
               " --text 'Hello world' --no-special-tokens");
  EXPECT_EQ(r.out, "7592 2088\n");
  r = run_peft("tokenize " + model("llama2-spm") + " --text 'Hello world' --json");  // BOS per HF
  EXPECT_EQ(nlohmann::json::parse(last_line(r.out))["ids"],
            nlohmann::json::parse("[1, 15043, 3186]"));
  r = run_peft("tokenize " + model("llama2-spm") + " --text '' --no-special-tokens --json");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(last_line(r.out), R"({"ids":[]})");
  const std::string dir = fresh_dir("peft_tok_cli_lines");
  std::ofstream(dir + "/t.txt") << "a b\nc\n";
  r = run_peft("tokenize " + model("bert-base-uncased") + " --file " + dir +
               "/t.txt --lines --json");
  EXPECT_EQ(r.status, 0) << r.err;
  std::filesystem::remove_all(dir);
  EXPECT_EQ(last_line(r.out), R"({"ids":[[101,1037,1038,102],[101,1039,102]]})");
}

TEST(TokenizeCli, FileInput) {
  const std::string dir = fresh_dir("peft_tok_cli_file");
  std::ofstream(dir + "/t.txt") << "<|im_start|>user\nHello!<|im_end|>\n";
  const CommandResult r =
      run_peft("tokenize " + model("qwen2.5") + " --file " + dir + "/t.txt --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(last_line(r.out))["ids"],
            nlohmann::json::parse("[151644, 872, 198, 9707, 0, 151645, 198]"));
  std::filesystem::remove_all(dir);
}

TEST(TokenizeCli, Detokenize) {
  CommandResult r = run_peft("detokenize " + model("qwen2.5") + " --ids 151644,9707,1879 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(last_line(r.out))["text"], "<|im_start|>Hello world");
  r = run_peft("detokenize " + model("llama2-spm") + " --ids 1,15043,3186 --skip-special-tokens");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "Hello world\n");
  r = run_peft("detokenize " + model("bert-base-uncased") + " --ids '101, 7592, 1010, 2088, 102'");
  EXPECT_EQ(r.out, "[CLS] hello, world [SEP]\n");
}

void expect_one_error_line(const CommandResult& r) {
  EXPECT_EQ(r.err.rfind("peft: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(TokenizeCli, ErrorsAndUsage) {
  // The work failed: exit 1, one "peft: error:" line naming the folder.
  CommandResult r = run_peft("tokenize --model /nonexistent/model --text hi");
  EXPECT_EQ(r.status, 1);
  expect_one_error_line(r);
  EXPECT_NE(r.err.find("/nonexistent/model"), std::string::npos);
  r = run_peft("tokenize " + model("qwen2.5") + " --file /nonexistent/text.txt");
  EXPECT_EQ(r.status, 1);
  expect_one_error_line(r);
  r = run_peft("detokenize " + model("bert-base-uncased") + " --ids 99999999");
  EXPECT_EQ(r.status, 1);
  expect_one_error_line(r);
  // Bad usage: exit 2.
  for (const char* args :
       {"tokenize", "tokenize --text hi", "tokenize --model x",
        "tokenize --model x --text a --file b", "tokenize --model x --text a --bogus",
        "detokenize --model x", "detokenize --model x --ids 1,x"}) {
    r = run_peft(args);
    EXPECT_EQ(r.status, 2) << args << ": " << r.err;
    expect_one_error_line(r);
  }
}

}  // namespace
}  // namespace peft::testing
