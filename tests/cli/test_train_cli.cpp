// End-to-end: peft init / train / eval / generate / merge on a tiny model, through the binary.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "cli_fixtures.h"
#include "cli_run.h"

namespace peft {
namespace {
using testing::fresh_dir;
using testing::last_line;
using testing::read_all;
using testing::run_peft;
namespace fs = std::filesystem;

// One tiny model (qwen2 preset "tiny", the demo tokenizer) and data shared by the tests.
class TrainCli : public testing::TinyModelSuite<TrainCli> {
 public:
  static constexpr const char* folder = "train_cli";
};

nlohmann::json json_of(const testing::CommandResult& r) {
  return nlohmann::json::parse(last_line(r.out));
}

TEST_F(TrainCli, LoraTrainEvalMergeAgree) {
  const std::string out = dir_ + "/lora";
  auto r = run_peft(
      "train --model " + dir_ + "/model --data " + data_ + " --out " + out +
      " --max-steps 6 --batch-size 4 --lr 1e-2 --target-modules q_proj,v_proj,down_proj --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto summary = json_of(r);
  for (const char* key :
       {"steps", "final_loss", "eval_loss", "trainable_params", "tokens_per_s", "peak_rss_mb"})
    EXPECT_TRUE(summary.contains(key)) << key;
  EXPECT_EQ(summary["steps"], 6);
  for (const char* f :
       {"adapter_config.json", "adapter_model.safetensors", "metrics.jsonl", "loss.svg"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;

  auto base = run_peft("eval --model " + dir_ + "/model --data " + eval_ + " --json");
  auto adapted =
      run_peft("eval --model " + dir_ + "/model --adapter " + out + " --data " + eval_ + " --json");
  ASSERT_EQ(base.status, 0) << base.err;
  ASSERT_EQ(adapted.status, 0) << adapted.err;
  EXPECT_NE(json_of(base)["loss"], json_of(adapted)["loss"]);

  auto merged = run_peft("merge --model " + dir_ + "/model --adapter " + out + " --out " + dir_ +
                         "/merged --json");
  ASSERT_EQ(merged.status, 0) << merged.err;
  auto merged_eval = run_peft("eval --model " + dir_ + "/merged --data " + eval_ + " --json");
  ASSERT_EQ(merged_eval.status, 0) << merged_eval.err;
  EXPECT_NEAR(json_of(merged_eval)["loss"].get<double>(), json_of(adapted)["loss"].get<double>(),
              1e-5);

  auto gen = run_peft("generate --model " + dir_ + "/model --adapter " + out +
                      " --prompt 'What sound does a cow make?' --max-new-tokens 4 --json");
  ASSERT_EQ(gen.status, 0) << gen.err;
  // Four new tokens, or fewer when the model emitted its end token.
  const auto g = json_of(gen);
  ASSERT_GE(g["ids"].size(), 1u);
  if (g["stopped_at_end_token"].get<bool>())
    EXPECT_LE(g["ids"].size(), 4u);
  else
    EXPECT_EQ(g["ids"].size(), 4u);
  // The prompt's pass is timed apart from the decoding steps.
  EXPECT_GT(g["prompt_tokens"].get<int>(), 1);
  EXPECT_GT(g["prefill_tokens_per_s"].get<double>(), 0.0);
}

// Mixed precision: the frozen base in bf16 (native bf16 GEMMs with bf16-rounded activations where
// the probe picks them, as on AVX512-BF16 / AMX machines; f32 panels elsewhere) follows the f32
// base's 10-step loss trajectory within 2% per step, from the same seed and data.
TEST_F(TrainCli, Bf16BaseFollowsTheF32Trajectory) {
  auto losses = [&](const std::string& base_dtype) {
    const std::string out = dir_ + "/traj_" + base_dtype;
    auto r = run_peft("train --model " + dir_ + "/model --data " + data_ + " --out " + out +
                      " --max-steps 10 --batch-size 4 --lr 1e-2 --base-dtype " + base_dtype +
                      " --overwrite --json");
    EXPECT_EQ(r.status, 0) << r.err;
    std::vector<double> l;
    std::ifstream f(out + "/metrics.jsonl");
    for (std::string line; std::getline(f, line);)
      l.push_back(nlohmann::json::parse(line)["loss"].get<double>());
    return l;
  };
  const std::vector<double> f32 = losses("f32"), bf16 = losses("bf16");
  ASSERT_EQ(f32.size(), 10u);
  ASSERT_EQ(bf16.size(), 10u);
  for (size_t i = 0; i < f32.size(); ++i)
    EXPECT_NEAR(bf16[i], f32[i], 0.02 * f32[i]) << "step " << i;
  EXPECT_LT(f32.back(), f32.front());
  EXPECT_LT(bf16.back(), bf16.front());
}

TEST_F(TrainCli, PackingTrainsOnFewerRows) {
  auto r = run_peft("train --model " + dir_ + "/model --data " + data_ + " --out " + dir_ +
                    "/packed --packing --max-len 128 --batch-size 2 --max-steps 3");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("packed 47 records into "), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(dir_ + "/packed/adapter_model.safetensors"));
}

// Interactive chat: one user turn per stdin line (blank lines skipped), one JSON line per turn,
// and each prompt holds the whole conversation so far in the ChatML template.
TEST_F(TrainCli, ChatReadsTurnsFromStdinAndKeepsTheHistory) {
  const std::string turns = dir_ + "/turns.txt";
  std::ofstream(turns) << "What sound does a cow make?\n\nAnd a dog?\n";
  auto r = run_peft("generate --model " + dir_ + "/model --chat --max-new-tokens 3 --json", turns);
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<nlohmann::json> replies;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) replies.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(replies.size(), 2u) << r.out;
  // Token count of a text segment (ChatML encodes the segments between special tokens apart).
  auto count = [&](const std::string& text) {
    const std::string file = dir_ + "/segment.txt";
    std::ofstream(file, std::ios::binary) << text;
    auto t =
        run_peft("tokenize --model " + dir_ + "/model --no-special-tokens --json --file " + file);
    EXPECT_EQ(t.status, 0) << t.err;
    return nlohmann::json::parse(last_line(t.out))["ids"].size();
  };
  // Turn 1: <|im_start|>user\n{q}<|im_end|>\n <|im_start|>assistant\n (no default system turn).
  const size_t first = replies[0]["prompt_tokens"].get<size_t>();
  EXPECT_EQ(first, 1 + count("user\nWhat sound does a cow make?") + 1 + count("\n") + 1 +
                       count("assistant\n"));
  // Turn 2: the generation prompt became the reply, closed by <|im_end|>\n, then the new turn.
  const std::string reply = replies[0]["text"].get<std::string>();
  EXPECT_EQ(replies[1]["prompt_tokens"].get<size_t>(),
            first - count("assistant\n") + count("assistant\n" + reply) + 1 + count("\n") + 1 +
                count("user\nAnd a dog?") + 1 + count("\n") + 1 + count("assistant\n"));
}

TEST_F(TrainCli, MaxLenTruncationIsCounted) {
  auto r = run_peft("train --model " + dir_ + "/model --data " + data_ + " --out " + dir_ +
                    "/short --max-len 8 --max-steps 1 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(json_of(r)["truncated_records"], 47);  // every demo record is longer than 8 tokens
  EXPECT_NE(r.err.find("47 training records were longer than --max-len 8"), std::string::npos)
      << r.err;
}

// A damaged or mismatched adapter folder: one "peft: error:" line naming the problem, exit 1.
TEST_F(TrainCli, BadAdapterFolderGetsOneErrorLine) {
  const std::string good = dir_ + "/adapter_ok", bad = dir_ + "/adapter_bad";
  ASSERT_EQ(run_peft("train --model " + dir_ + "/model --data " + data_ + " --out " + good +
                     " --max-steps 1")
                .status,
            0);
  auto expect_error = [&](const std::string& what) {
    for (const char* cmd : {"eval", "merge"}) {
      const std::string extra =
          std::string(cmd) == "eval" ? " --data " + data_ : " --out " + dir_ + "/merged_bad";
      auto r = run_peft(std::string(cmd) + " --model " + dir_ + "/model --adapter " + bad + extra);
      EXPECT_EQ(r.status, 1) << cmd << ": " << r.err;
      EXPECT_EQ(r.err.rfind("peft: error: ", 0), 0u) << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
      EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
    }
  };
  auto reset = [&] {
    fs::remove_all(bad);
    fs::copy(good, bad, fs::copy_options::recursive);
  };
  reset();
  std::ofstream(bad + "/adapter_config.json") << "{\"r\": 4,";
  expect_error("invalid JSON");
  reset();
  const std::string weights = read_all(good + "/adapter_model.safetensors");
  std::ofstream(bad + "/adapter_model.safetensors", std::ios::binary)
      << weights.substr(0, weights.size() / 2);
  expect_error("adapter_model.safetensors");
  reset();
  auto config = nlohmann::json::parse(read_all(good + "/adapter_config.json"));
  config["r"] = 4;  // the file holds rank 8
  std::ofstream(bad + "/adapter_config.json") << config.dump();
  expect_error("expected [4, ");
  fs::remove(bad + "/adapter_model.safetensors");
  expect_error("adapter_model.safetensors");
}

TEST_F(TrainCli, ResumeGivesABitIdenticalAdapter) {
  const std::string common = "train --model " + dir_ + "/model --data " + data_ +
                             " --max-steps 6 --batch-size 4 --lr 1e-2 --lora-dropout 0.1 "
                             "--lora-bias all --save-every 3 --seed 5";
  ASSERT_EQ(run_peft(common + " --out " + dir_ + "/straight").status, 0);
  const std::string second = dir_ + "/resumed";
  fs::create_directories(second);
  fs::copy(dir_ + "/straight/checkpoint-3", second + "/checkpoint-3", fs::copy_options::recursive);
  auto r = run_peft(common + " --out " + second + " --resume " + second + "/checkpoint-3");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_all(dir_ + "/straight/adapter_model.safetensors"),
            read_all(second + "/adapter_model.safetensors"));
}

// --gradient-checkpointing recomputes each decoder layer in backward: the same arithmetic in the
// same order, so the trained files are bit-identical to a run that kept every activation, for
// methods that act inside the layers in each way (LoRA with dropout and trained biases, per-layer
// prefixes, adapters after the sublayers). A masked LM is refused.
TEST_F(TrainCli, GradientCheckpointingTrainsBitIdentically) {
  const std::vector<std::string> methods = {"--method lora --lora-dropout 0.1 --lora-bias all",
                                            "--method prefix --num-virtual-tokens 4",
                                            "--method adapter --adapter-kind houlsby"};
  for (size_t i = 0; i < methods.size(); ++i) {
    const std::string common = "train --model " + dir_ + "/model --data " + data_ +
                               " --max-steps 3 --batch-size 4 --lr 1e-2 --seed 3 --json " +
                               methods[i] + " --out " + dir_ + "/ckpt" + std::to_string(i);
    auto plain = run_peft(common + "-plain");
    ASSERT_EQ(plain.status, 0) << plain.err;
    auto recomputed = run_peft(common + "-recomputed --gradient-checkpointing");
    ASSERT_EQ(recomputed.status, 0) << recomputed.err;
    int files = 0;
    for (const auto& e : fs::directory_iterator(dir_ + "/ckpt" + std::to_string(i) + "-plain")) {
      if (e.path().extension() != ".safetensors") continue;
      ++files;
      EXPECT_EQ(read_all(e.path().string()),
                read_all(dir_ + "/ckpt" + std::to_string(i) + "-recomputed/" +
                         e.path().filename().string()))
          << methods[i] << ": " << e.path().filename();
    }
    EXPECT_GT(files, 0) << methods[i];
    // The flag reaches the memory guard's plan (with 2 layers, layer inputs plus one layer is
    // more than the two layers' activations: the estimate differs either way).
    EXPECT_NE(json_of(recomputed)["memory_estimate_mb"].get<double>(),
              json_of(plain)["memory_estimate_mb"].get<double>());
  }
  auto bert = run_peft("init --arch bert --preset tiny --out " + dir_ + "/bert-ckpt");
  ASSERT_EQ(bert.status, 0) << bert.err;
  auto refused =
      run_peft("train --model " + dir_ + "/bert-ckpt --data " + data_ +
               " --max-steps 1 --gradient-checkpointing --out " + dir_ + "/bert-ckpt-out");
  EXPECT_EQ(refused.status, 1);
  EXPECT_NE(refused.err.find("--gradient-checkpointing is implemented for decoders"),
            std::string::npos)
      << refused.err;
}

// --method lora,prefix trains both at once into one sub-folder each; eval, generate and info
// take the stack folder, and it behaves as its two folders given in order. A YAML list stacks
// too.
TEST_F(TrainCli, StackedMethodsTrainSaveAndLoadTogether) {
  const std::string out = dir_ + "/stack", model = dir_ + "/model";
  auto r = run_peft("train --model " + model + " --data " + data_ + " --out " + out +
                    " --method lora,prefix --r 4 --num-virtual-tokens 4 --prefix-projection"
                    " --encoder-hidden-size 16 --max-steps 3 --batch-size 4 --lr 1e-2 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(json_of(r)["method"], "lora+prefix");
  EXPECT_EQ(nlohmann::json::parse(read_all(out + "/adapter_stack.json")),
            (nlohmann::json{{"adapters", {"lora", "prefix"}}}));
  EXPECT_EQ(nlohmann::json::parse(read_all(out + "/lora/adapter_config.json"))["r"], 4);
  EXPECT_TRUE(fs::exists(out + "/prefix/prompt_encoder.safetensors"));
  EXPECT_FALSE(fs::exists(out + "/adapter_config.json"));

  const std::string prompt = " --prompt 'What sound does a cow make?' --max-new-tokens 6 --json";
  auto whole = run_peft("generate --model " + model + " --adapter " + out + prompt);
  auto parts = run_peft("generate --model " + model + " --adapter " + out + "/lora --adapter " +
                        out + "/prefix" + prompt);
  auto prefix_only =
      run_peft("generate --model " + model + " --adapter " + out + "/prefix" + prompt);
  ASSERT_EQ(whole.status, 0) << whole.err;
  ASSERT_EQ(parts.status, 0) << parts.err;
  EXPECT_EQ(json_of(whole)["ids"], json_of(parts)["ids"]);
  auto e1 =
      run_peft("eval --model " + model + " --adapter " + out + " --data " + eval_ + " --json");
  auto e2 = run_peft("eval --model " + model + " --adapter " + out + "/prefix --data " + eval_ +
                     " --json");
  ASSERT_EQ(e1.status, 0) << e1.err;
  EXPECT_NE(json_of(e1)["loss"], json_of(e2)["loss"]) << "the LoRA half must count";
  auto info = run_peft("info " + out + " --json");
  ASSERT_EQ(info.status, 0) << info.err;
  EXPECT_EQ(json_of(info)["kind"], "adapter stack");
  EXPECT_EQ(json_of(info)["adapters"].size(), 2u);
  // merge folds LoRA only: the stack is refused, its lora/ folder merges.
  EXPECT_EQ(
      run_peft("merge --model " + model + " --adapter " + out + " --out " + dir_ + "/sm").status,
      1);

  const std::string yaml = dir_ + "/stack.yaml";
  std::ofstream(yaml) << "method: [lora, prompt]\nmax-steps: 1\nnum-virtual-tokens: 2\n";
  r = run_peft("train --config " + yaml + " --model " + model + " --data " + data_ + " --out " +
               dir_ + "/stack_yaml");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(read_all(dir_ + "/stack_yaml/adapter_stack.json")),
            (nlohmann::json{{"adapters", {"lora", "prompt"}}}));

  r = run_peft("train --model " + model + " --data " + data_ + " --out " + dir_ +
               "/stack_bad --method lora,full");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("cannot be stacked"), std::string::npos) << r.err;
  r = run_peft("train --model " + model + " --data " + data_ + " --out " + dir_ +
               "/stack_bad --method prefix,ptuning-v2");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("two prefix-type methods"), std::string::npos) << r.err;
}

// Method flags given with --adapter / --resume must agree with the folder's config.
TEST_F(TrainCli, FlagsDisagreeingWithTheContinuedFolderAreRefused) {
  const std::string first = dir_ + "/agree_first", model = dir_ + "/model";
  ASSERT_EQ(run_peft("train --model " + model + " --data " + data_ + " --out " + first +
                     " --max-steps 1 --r 4 --save-every 1")
                .status,
            0);
  auto r = run_peft("train --model " + model + " --data " + data_ + " --out " + dir_ +
                    "/agree_second --max-steps 1 --adapter " + first + " --r 4");
  EXPECT_EQ(r.status, 0) << r.err;
  for (const std::string& from : {" --adapter " + first, " --resume " + first + "/checkpoint-1"}) {
    r = run_peft("train --model " + model + " --data " + data_ + " --out " + dir_ +
                 "/agree_third --max-steps 2" + from + " --r 8");
    EXPECT_EQ(r.status, 1) << from;
    EXPECT_NE(r.err.find("--r 8: " + first), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("has r = 4"), std::string::npos) << r.err;
    r = run_peft("train --model " + model + " --data " + data_ + " --out " + dir_ +
                 "/agree_third --max-steps 2" + from + " --num-virtual-tokens 3");
    EXPECT_EQ(r.status, 1) << from;
    EXPECT_NE(r.err.find("--num-virtual-tokens does not apply"), std::string::npos) << r.err;
  }
}

TEST_F(TrainCli, YamlConfigSuppliesFlags) {
  const std::string yaml = dir_ + "/run.yaml";
  std::ofstream(yaml)
      << "max-steps: 2\nbatch-size: 2\nr: 4\ntarget-modules: [q_proj, k_proj]\nno-shuffle: true\n";
  auto r = run_peft("train --config " + yaml + " --model " + dir_ + "/model --data " + data_ +
                    " --out " + dir_ + "/yaml --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(json_of(r)["steps"], 2);
  auto config = nlohmann::json::parse(read_all(dir_ + "/yaml/adapter_config.json"));
  EXPECT_EQ(config["r"], 4);
  EXPECT_EQ(config["target_modules"], (nlohmann::json{"q_proj", "k_proj"}));
  std::ofstream(yaml) << "max-stepz: 2\n";
  auto bad = run_peft("train --config " + yaml + " --model " + dir_ + "/model --data " + data_ +
                      " --out " + dir_ + "/yaml2");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("unknown setting \"max-stepz\""), std::string::npos) << bad.err;
}

TEST_F(TrainCli, BadInputGetsOneErrorLineAndExitOne) {
  const std::string bad = dir_ + "/bad.jsonl";
  std::ofstream(bad) << "{\"text\": \"fine\"}\n{\"text\": 3}\n";
  auto r =
      run_peft("train --model " + dir_ + "/model --data " + bad + " --out " + dir_ + "/bad_out");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("line 2: \"text\" must be a string"), std::string::npos) << r.err;
  std::ofstream(bad) << "{\"text\": \"fine\"}\n{not json\n";
  r = run_peft("train --model " + dir_ + "/model --data " + bad + " --out " + dir_ +
               "/bad_out --overwrite");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("line 2: invalid JSON"), std::string::npos) << r.err;
  r = run_peft("train --model " + dir_ + "/nope --data " + bad + " --out " + dir_ +
               "/bad_out --overwrite");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err.rfind("peft: error: ", 0), 0u) << r.err;
  // An existing non-empty --out is refused without --overwrite.
  fs::create_directories(dir_ + "/full_out");
  std::ofstream(dir_ + "/full_out/x") << "x";
  r = run_peft("train --model " + dir_ + "/model --data " + data_ + " --out " + dir_ + "/full_out");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("not empty"), std::string::npos) << r.err;
  r = run_peft("train --model " + dir_ + "/model --data " + data_ + " --out " + dir_ +
               "/x --method nonsense");
  EXPECT_NE(r.status, 0);
}

// Reverse four of eight symbols, each answer symbol then moved on by `shift` (mod 8):
// {"input_ids": [a b c d SEP d' c' b' a']}, loss on the answer only. Distinct records from a
// seeded generator; the first `train` go to PREFIX_train.jsonl, the rest to PREFIX_eval.jsonl.
void write_reversal_data(const std::string& prefix, int shift, int train, int held_out) {
  std::mt19937 rng(7);
  std::set<std::vector<int>> seen;
  std::ofstream tr(prefix + "_train.jsonl"), ev(prefix + "_eval.jsonl");
  for (int n = 0; n < train + held_out;) {
    std::vector<int> s(4);
    for (int& x : s) x = int(rng() % 8);
    if (!seen.insert(s).second) continue;
    nlohmann::json ids, labels = {-100, -100, -100, -100, -100};
    for (int x : s) ids.push_back(10 + x);
    ids.push_back(3);
    for (int i = 3; i >= 0; --i) {
      const int answer = 10 + (s[size_t(i)] + shift) % 8;
      ids.push_back(answer);
      labels.push_back(answer);
    }
    (n++ < train ? tr : ev) << nlohmann::json{{"input_ids", ids}, {"labels", labels}}.dump()
                            << "\n";
  }
}

// A tiny random decoder learns to reverse (a task that needs attention by position) to > 95%
// top-1 token accuracy on held-out records by full fine-tuning; then a LoRA adapter on the
// default q_proj / v_proj teaches that model a new task (reverse, then the next symbol) to > 95%.
TEST(TrainCliToyTask, TinyModelLearnsToReverseAndLoraLearnsANewTask) {
  const std::string dir = fresh_dir("toy_reverse_" + std::to_string(::getpid()));
  write_reversal_data(dir + "/reverse", 0, 800, 100);
  write_reversal_data(dir + "/next", 1, 800, 100);
  ASSERT_EQ(run_peft("init --arch qwen2 --preset tiny --seed 1 --out " + dir + "/model").status, 0);
  auto accuracy = [&](const std::string& model, const std::string& task) {
    auto r = run_peft("eval --model " + dir + model + " --data " + dir + "/" + task +
                      "_eval.jsonl --json");
    EXPECT_EQ(r.status, 0) << r.err;
    return nlohmann::json::parse(last_line(r.out))["token_accuracy"].get<double>();
  };
  auto train = [&](const std::string& args, const std::string& task, int steps) {
    auto r = run_peft("train " + args + " --data " + dir + "/" + task +
                      "_train.jsonl --batch-size 16 --scheduler cosine --warmup-steps 10 "
                      "--seed 1 --json");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(last_line(r.out))["steps"], steps);
  };
  EXPECT_LT(accuracy("/model", "reverse"), 0.2);  // chance: 1 in 8
  train("--model " + dir + "/model --method full --epochs 6 --lr 3e-3 --out " + dir + "/reverser",
        "reverse", 300);
  EXPECT_GT(accuracy("/reverser", "reverse"), 0.95);

  EXPECT_LT(accuracy("/reverser", "next"), 0.2);
  train("--model " + dir + "/reverser --r 16 --lora-alpha 32 --epochs 4 --lr 1e-2 --out " + dir +
            "/next_lora",
        "next", 200);
  EXPECT_GT(accuracy("/reverser --adapter " + dir + "/next_lora", "next"), 0.95);
}

}  // namespace
}  // namespace peft
