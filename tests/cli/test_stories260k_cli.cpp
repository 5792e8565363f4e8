// The shipped stories260K (data/models/stories260K) against its provenance: `peft generate
// --greedy` from "Once upon a time" writes the story llama2.c's run.c -t 0.0 writes (published in
// llama2.c doc/stories260K.md, and reproduced by transformers; see the folder's README), and
// generation ends where the model ends its story: at BOS (id 1), which the folder's
// generation_config.json lists as an end token.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli_run.h"

namespace peft {
namespace {
using testing::fresh_dir;
using testing::last_line;
using testing::run_peft;
namespace fs = std::filesystem;

const std::string kModel = std::string(PEFT_SOURCE_DIR) + "/data/models/stories260K";

// llama2.c doc/stories260K.md, `run.c stories260K.bin -z tok512.bin -t 0.0` (256 tokens from BOS).
const char* const kReference =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. "
    "She said, \"I want to play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to "
    "do.\"\n"
    "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what to do.\" "
    "Her mom said, \"Don't worry, Lily. We can help you.";

nlohmann::json generate_json(const std::string& model, int max_new_tokens) {
  const auto r = run_peft("generate --threads 1 --model '" + model +
                          "' --prompt 'Once upon a time' --greedy --json --max-new-tokens " +
                          std::to_string(max_new_tokens));
  EXPECT_EQ(r.status, 0) << r.err;
  return nlohmann::json::parse(last_line(r.out));
}

TEST(Stories260K, GreedyStoryIsLlama2cReference) {
  const nlohmann::json j = generate_json(kModel, 256);
  const std::string story = "Once upon a time" + j["text"].get<std::string>();
  EXPECT_EQ(j["prompt_tokens"], 5);  // BOS + 4 pieces, as SentencePiece encodes it
  ASSERT_GE(story.size(), std::string(kReference).size()) << story;
  EXPECT_EQ(story.substr(0, std::string(kReference).size()), kReference);
}

TEST(Stories260K, GenerationStopsAtTheEndOfTheStory) {
  const nlohmann::json j = generate_json(kModel, 500);
  EXPECT_TRUE(j["stopped_at_end_token"].get<bool>());
  const auto ids = j["ids"].get<std::vector<int>>();
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.back(), 1);  // BOS ends the story, as in llama2.c's run.c
  EXPECT_EQ(ids.size(), 342u);
  const std::string text = j["text"].get<std::string>();
  const std::string ending = "You are a good friend.\"";
  ASSERT_GE(text.size(), ending.size());
  EXPECT_EQ(text.substr(text.size() - ending.size()), ending);  // special tokens are not shown

  // Without generation_config.json the model's end token is config.json's EOS (2), which this
  // model never writes: generation runs on past the story.
  const std::string copy = fresh_dir("stories260k_" + std::to_string(::getpid()));
  for (const auto& f : fs::directory_iterator(kModel))
    if (f.path().filename() != "generation_config.json" && f.is_regular_file())
      fs::copy_file(f.path(), copy + "/" + f.path().filename().string());
  const nlohmann::json k = generate_json(copy, 400);
  EXPECT_FALSE(k["stopped_at_end_token"].get<bool>());
  EXPECT_EQ(k["ids"].size(), 400u);
  EXPECT_EQ(k["ids"][341], 1);
  fs::remove_all(copy);
}

}  // namespace
}  // namespace peft
