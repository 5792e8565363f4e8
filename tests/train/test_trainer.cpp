#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ops/cross_entropy.h"
#include "ops/embedding.h"
#include "train/trainer.h"

namespace peft {
namespace {
namespace fs = std::filesystem;

constexpr int64_t kVocab = 11, kDim = 8;

// Position t predicts labels[t + 1] (the decoder convention).
Tensor shift_left(const Tensor& labels) {
  Tensor t = Tensor::zeros(labels.shape(), DType::I32);
  const int64_t rows = labels.dim(0), cols = labels.dim(1);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      t.data<int32_t>()[r * cols + c] =
          c + 1 < cols ? labels.data<int32_t>()[r * cols + c + 1] : kIgnoreIndex;
  return t;
}

// A bigram language model: logits of token t = W · E[t]. The toy task: next = (t + 3) mod V.
struct Bigram {
  ParamStore params;
  Bigram() {
    params.declare("E", {kVocab, kDim});
    params.declare("W", {kVocab, kDim});
    params.allocate();
    Rng rng(1);
    fill_normal(params.get("E")->value, rng, 0, 0.5f);
    fill_normal(params.get("W")->value, rng, 0, 0.5f);
  }
  LossFunction loss(float poison_after = -1) {
    return [this, poison_after](const Batch& b, float normaliser, bool /*training*/) {
      Var h = embedding(params.get("E"), b.input_ids);
      CrossEntropyOptions o;
      o.normaliser = normaliser;
      Var l = cross_entropy(h, params.get("W"), shift_left(b.labels), o);
      if (poison_after >= 0 && params.get("E")->value.data<float>()[0] != poison_after) {
        // Simulates a diverged model once the parameters moved away from the start.
        l->value.data<float>()[0] = NAN;
      }
      return l;
    };
  }
};

std::vector<Example> sequences(int count, int len) {
  std::vector<Example> out;
  for (int i = 0; i < count; ++i) {
    std::vector<int32_t> ids;
    int32_t t = i % kVocab;
    for (int k = 0; k < len - (i % 3); ++k, t = (t + 3) % kVocab) ids.push_back(t);
    out.push_back(Example{ids, ids, {}, 0});
  }
  return out;
}

std::string temp_dir(const std::string& name) {
  const std::string d = ::testing::TempDir() + "/trainer_" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(Trainer, LearnsTheToyTaskAndWritesMetrics) {
  Bigram model;
  BatchBuilder data(sequences(12, 9), {.batch_size = 4});
  BatchBuilder eval(sequences(4, 9), {.batch_size = 4, .shuffle = false});
  const std::string out = temp_dir("learns");
  TrainerOptions o;
  o.epochs = 30;
  o.lr = 0.1f;
  o.out_dir = out;
  o.eval_every = 30;
  Trainer trainer(
      model.params, data, &eval, model.loss(), [](const std::string&) {}, o);
  const double before = trainer.evaluate(eval);
  TrainResult r = trainer.train();
  EXPECT_EQ(r.steps, 90);
  ASSERT_TRUE(r.eval_loss.has_value());
  EXPECT_LT(*r.eval_loss, 0.1 * before);
  std::ifstream metrics(out + "/metrics.jsonl");
  std::string line;
  int lines = 0, evals = 0;
  while (std::getline(metrics, line)) {
    auto j = nlohmann::json::parse(line);
    for (const char* key : {"step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s"})
      ASSERT_TRUE(j.contains(key)) << key;
    evals += j.contains("eval_loss");
    ++lines;
  }
  EXPECT_EQ(lines, 90);
  EXPECT_EQ(evals, 3);
  EXPECT_TRUE(fs::exists(out + "/loss.svg"));
}

TEST(Trainer, AccumulationEqualsTheLargerBatch) {
  auto run = [](int64_t batch, int64_t accum) {
    Bigram model;
    BatchBuilder data(sequences(8, 7), {.batch_size = batch, .shuffle = false});
    TrainerOptions o;
    o.epochs = 3;
    o.grad_accum = accum;
    o.lr = 0.05f;
    Trainer t(
        model.params, data, nullptr, model.loss(), [](const std::string&) {}, o);
    t.train();
    return model.params.values().to_vector();
  };
  std::vector<float> big = run(4, 1), small = run(2, 2);
  ASSERT_EQ(big.size(), small.size());
  for (size_t i = 0; i < big.size(); ++i) ASSERT_NEAR(big[i], small[i], 1e-5) << i;
}

TEST(Trainer, ResumeGivesBitIdenticalParameters) {
  TrainerOptions o;
  o.max_steps = 7;
  o.lr = 0.05f;
  o.warmup_steps = 2;
  o.schedule = Schedule::Cosine;
  o.adamw.weight_decay = 0.01f;
  o.save_every = 3;
  o.seed = 42;
  const std::string out = temp_dir("resume");
  o.out_dir = out;
  BatchBuilder data(sequences(10, 6), {.batch_size = 3});
  Bigram straight;
  Trainer(
      straight.params, data, nullptr, straight.loss(), [](const std::string&) {}, o)
      .train();
  ASSERT_TRUE(fs::exists(out + "/checkpoint-6/trainer_state.json"));

  Bigram resumed;
  TrainerOptions o2 = o;
  o2.out_dir = temp_dir("resume_second");
  Trainer t(
      resumed.params, data, nullptr, resumed.loss(), [](const std::string&) {}, o2);
  t.resume_from(out + "/checkpoint-3");
  t.train();
  EXPECT_EQ(resumed.params.values().to_vector(), straight.params.values().to_vector());
}

TEST(Trainer, NanLossStopsWithTheStepAndKeepsCheckpoints) {
  Bigram model;
  BatchBuilder data(sequences(6, 6), {.batch_size = 2});
  TrainerOptions o;
  o.max_steps = 10;
  o.save_every = 1;
  o.lr = 0.05f;
  const std::string out = temp_dir("nan");
  o.out_dir = out;
  const float start = model.params.get("E")->value.data<float>()[0];
  Trainer t(
      model.params, data, nullptr, model.loss(start), [](const std::string&) {}, o);
  try {
    t.train();
    FAIL() << "a NaN loss did not stop training";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 2: the loss is nan"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::exists(out + "/checkpoint-1/trainer_state.safetensors"));
  EXPECT_FALSE(fs::exists(out + "/checkpoint-2"));
}

TEST(Trainer, ClipGradNormMatchesTorchFormula) {
  Tensor g = Tensor::from_vector({3, 4}, {2});
  EXPECT_DOUBLE_EQ(clip_grad_norm(g, 1.0f), 5.0);
  EXPECT_NEAR(g.data<float>()[0], 3.0 / (5.0 + 1e-6), 1e-7);
  Tensor h = Tensor::from_vector({0.3f, 0.4f}, {2});
  clip_grad_norm(h, 1.0f);
  EXPECT_EQ(h.data<float>()[1], 0.4f);
}

}  // namespace
}  // namespace peft
