#include <gtest/gtest.h>

#include <cmath>

#include "autograd/params.h"
#include "train/adamw.h"
#include "train/plot.h"
#include "train/schedule.h"

namespace peft {
namespace {

TEST(Schedule, WarmupThenDecayLikeTransformers) {
  // transformers: lr_lambda(s) = s / max(1, W) during warmup, then the decay of each schedule.
  EXPECT_FLOAT_EQ(learning_rate_at(Schedule::Linear, 1.0f, 0, 10, 110), 0.0f);
  EXPECT_FLOAT_EQ(learning_rate_at(Schedule::Linear, 1.0f, 5, 10, 110), 0.5f);
  EXPECT_FLOAT_EQ(learning_rate_at(Schedule::Linear, 1.0f, 10, 10, 110), 1.0f);
  EXPECT_FLOAT_EQ(learning_rate_at(Schedule::Linear, 1.0f, 60, 10, 110), 0.5f);
  EXPECT_FLOAT_EQ(learning_rate_at(Schedule::Linear, 1.0f, 110, 10, 110), 0.0f);
  EXPECT_FLOAT_EQ(learning_rate_at(Schedule::Cosine, 2.0f, 60, 10, 110), 1.0f);
  EXPECT_NEAR(learning_rate_at(Schedule::Cosine, 2.0f, 35, 10, 110), 1.0f + std::cos(M_PI / 4),
              1e-6);
  EXPECT_FLOAT_EQ(learning_rate_at(Schedule::Constant, 3.0f, 1000, 0, 10), 3.0f);
  EXPECT_FLOAT_EQ(learning_rate_at(Schedule::Constant, 3.0f, 0, 0, 10), 3.0f);
  EXPECT_THROW(schedule_from_name("step"), Error);
  EXPECT_EQ(schedule_from_name("cosine"), Schedule::Cosine);
}

// torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01) on one parameter
// p0 = 1 with gradients 0.5 then −0.25 gives, step by step (computed by hand from the update
// rule in torch's documentation):
//   step 1: p = 1·(1 − 0.001) − 0.1·(0.05/0.1)/(sqrt(0.00025/0.001) + 1e-8)            = 0.899
//   step 2: m = 0.9·0.05 − 0.025 = 0.02, v = 0.999·0.00025 + 0.001·0.0625 = 0.00031225
//           p = 0.899·0.999 − (0.1/0.19)·0.02 / (sqrt(0.00031225)/sqrt(0.001999) + 1e-8)
TEST(AdamW, MatchesTorchUpdateRule) {
  ParamStore params;
  params.declare("p", {1});
  params.allocate();
  params.get("p")->value.fill(1.0f);
  AdamW opt(params, {0.9f, 0.999f, 1e-8f, 0.01f});
  params.grads().fill(0.5f);
  opt.step(0.1f);
  EXPECT_NEAR(params.values().data<float>()[0], 0.899, 1e-6);
  params.grads().fill(-0.25f);
  opt.step(0.1f);
  const double expected =
      0.899 * 0.999 - (0.1 / 0.19) * 0.02 / (std::sqrt(0.00031225) / std::sqrt(0.001999) + 1e-8);
  EXPECT_NEAR(params.values().data<float>()[0], expected, 1e-6);
  EXPECT_EQ(opt.steps(), 2);
}

TEST(Plot, SvgHasAxesLabelsAndBothSeries) {
  std::string svg = render_loss_svg(
      {{"train", "#1f77b4", {{1, 3.0}, {2, 2.5}, {3, 2.0}}}, {"eval", "#d62728", {{3, 2.2}}}},
      "loss <run>");
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find(">step</text>"), std::string::npos);
  EXPECT_NE(svg.find("loss (nats/token)"), std::string::npos);
  EXPECT_NE(svg.find(">train</text>"), std::string::npos);
  EXPECT_NE(svg.find(">eval</text>"), std::string::npos);
  EXPECT_NE(svg.find("loss &lt;run&gt;"), std::string::npos);
  EXPECT_NE(svg.find("<path d=\"M"), std::string::npos);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
}

}  // namespace
}  // namespace peft
