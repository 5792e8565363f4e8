#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "infer/stop_tokens.h"

namespace peft {
namespace {
namespace fs = std::filesystem;

class StopTokens : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/stop_tokens_" + std::to_string(::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& text) { std::ofstream(dir_ + "/generation_config.json") << text; }
  std::string dir_;
};

TEST_F(StopTokens, WithoutGenerationConfigTheModelConfigDecides) {
  EXPECT_EQ(generation_eos_ids(dir_, {2}), std::vector<int64_t>{2});
  EXPECT_EQ(generation_eos_ids(dir_, {}), std::vector<int64_t>{});
}

TEST_F(StopTokens, GenerationConfigReplacesTheModelConfig) {
  write(R"({"bos_token_id": 1, "eos_token_id": [1, 2]})");
  EXPECT_EQ(generation_eos_ids(dir_, {2}, 512), (std::vector<int64_t>{1, 2}));
  write(R"({"eos_token_id": 7})");
  EXPECT_EQ(generation_eos_ids(dir_, {2}), std::vector<int64_t>{7});
  // A file without the field (or with null) leaves config.json's.
  write(R"({"bos_token_id": 1})");
  EXPECT_EQ(generation_eos_ids(dir_, {2}), std::vector<int64_t>{2});
  write(R"({"eos_token_id": null})");
  EXPECT_EQ(generation_eos_ids(dir_, {2}), std::vector<int64_t>{2});
}

TEST_F(StopTokens, MalformedFilesAreErrorsNamingTheFile) {
  for (const char* bad : {"{", "[1, 2]", R"({"eos_token_id": "2"})", R"({"eos_token_id": [1, -2]})",
                          R"({"eos_token_id": 1.5})", R"({"eos_token_id": 600})"}) {
    write(bad);
    try {
      generation_eos_ids(dir_, {2}, 512);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("generation_config.json"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace peft
