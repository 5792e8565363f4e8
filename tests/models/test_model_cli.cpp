// The peft program end to end on tiny models: init -> info -> eval, exit statuses and errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace peft {
namespace {

namespace fs = std::filesystem;

struct CliRun {
  int status = -1;
  std::string out;  // stdout and stderr together
};

CliRun run(const std::string& args) {
  CliRun r;
  const std::string cmd = std::string(PEFT_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  const int s = pclose(p);
  r.status = WIFEXITED(s) ? WEXITSTATUS(s) : -1;
  return r;
}

nlohmann::json last_json(const std::string& out) {
  const size_t start = out.rfind("\n{");
  return nlohmann::json::parse(start == std::string::npos ? out : out.substr(start + 1));
}

TEST(ModelCli, InitInfoEvalOnEveryArchitecture) {
  const std::string root = ::testing::TempDir() + "/peft_cli_models";
  fs::remove_all(root);
  fs::create_directories(root);
  const std::string data = root + "/data.jsonl";
  std::ofstream(data) << "{\"input_ids\": [5, 9, 2, 7, 1]}\n"
                      << "{\"input_ids\": [3, 4, 8], \"labels\": [-100, 4, 8]}\n";
  for (const char* arch : {"qwen2", "llama", "baichuan", "bert"}) {
    SCOPED_TRACE(arch);
    const std::string dir = root + "/" + arch;
    CliRun init = run(std::string("init --arch ") + arch + " --preset tiny --out " + dir +
                      " --dtype bf16 --seed 1 --json");
    ASSERT_EQ(init.status, 0) << init.out;
    CliRun info = run("info " + dir + " --json");
    ASSERT_EQ(info.status, 0) << info.out;
    const nlohmann::json i = last_json(info.out);
    EXPECT_EQ(i["model_type"], arch);
    EXPECT_EQ(i["params"], last_json(init.out)["params"]);
    EXPECT_EQ(i["dtypes"].begin().key(), "BF16");
    CliRun eval = run("eval --model " + dir + " --data " + data + " --json --batch-size 2");
    ASSERT_EQ(eval.status, 0) << eval.out;
    const nlohmann::json e = last_json(eval.out);
    EXPECT_EQ(e["tokens"], std::string(arch) == "bert" ? 7 : 6);
    EXPECT_NEAR(e["ppl"].get<double>(), std::exp(e["loss"].get<double>()),
                1e-9 * e["ppl"].get<double>());
  }
}

TEST(ModelCli, BadInputsExitWithOneLineErrors) {
  const std::string root = ::testing::TempDir() + "/peft_cli_errors";
  fs::remove_all(root);
  fs::create_directories(root);
  CliRun r = run("init --arch gpt2 --preset tiny --out " + root + "/x");
  EXPECT_EQ(r.status, 2) << r.out;
  r = run("init --arch bert --preset qwen2-7b --out " + root + "/x");
  EXPECT_EQ(r.status, 2) << r.out;
  ASSERT_EQ(run("init --arch qwen2 --preset tiny --out " + root + "/m").status, 0);
  std::ofstream(root + "/bad.jsonl") << "{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, 999]}\n";
  r = run("eval --model " + root + "/m --data " + root + "/bad.jsonl");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("peft: error: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("line 2"), std::string::npos) << r.out;
  // A truncated weights file is a one-line error, not a crash.
  fs::resize_file(root + "/m/model.safetensors", 1000);
  r = run("eval --model " + root + "/m --data " + root + "/bad.jsonl");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("model.safetensors"), std::string::npos) << r.out;
  r = run("info " + root + "/nowhere");
  EXPECT_EQ(r.status, 1) << r.out;
}

}  // namespace
}  // namespace peft
