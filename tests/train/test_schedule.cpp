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

// Losses that straddle zero on the y axis and steps from 0: every tick label is a plain number,
// and zero is "0", never "-0" (ceil of a small negative is -0.0).
TEST(Plot, NoNegativeZeroTickLabels) {
  for (double lo : {-0.3, -1e-3, -2.0, 0.0}) {
    SCOPED_TRACE(lo);
    const std::string svg =
        render_loss_svg({{"train", "#1f77b4", {{0, lo}, {1, 0.4}, {2, 0.1}, {7, 0.05}}}}, "title");
    EXPECT_EQ(svg.find(">-0<"), std::string::npos);
    EXPECT_EQ(svg.find(">-0.0<"), std::string::npos);
    EXPECT_EQ(svg.find("e-1"), std::string::npos);  // no 1.4e-17 from accumulated steps
    EXPECT_NE(svg.find(">0</text>"), std::string::npos);
  }
}

TEST(Plot, MarkedSeriesHasACirclePerPoint) {
  PlotSeries eval{"eval", "#d62728", {{2, 2.6}, {4, 2.1}}};
  eval.markers = true;
  const std::string svg =
      render_loss_svg({{"train", "#1f77b4", {{1, 3.0}, {2, 2.5}, {3, 2.0}, {4, 1.8}}}, eval}, "t");
  const size_t group = svg.find("<g class=\"markers\" fill=\"#d62728\">");
  ASSERT_NE(group, std::string::npos);
  const std::string markers = svg.substr(group, svg.find("</g>", group) - group);
  size_t circles = 0;
  for (size_t at = markers.find("<circle"); at != std::string::npos;
       at = markers.find("<circle", at + 1))
    ++circles;
  EXPECT_EQ(circles, 2u);
  EXPECT_EQ(svg.find("fill=\"#1f77b4\">"), std::string::npos);  // the train line has none
}

TEST(Plot, EmaIsDebiasedAndFollowsTheTrend) {
  const PlotPoints raw{{1, 4.0}, {2, 2.0}, {3, 4.0}, {4, 2.0}, {5, 4.0}};
  const PlotPoints s = ema_smooth(raw, 0.5);
  ASSERT_EQ(s.size(), raw.size());
  EXPECT_DOUBLE_EQ(s[0].second, 4.0);  // debiased: the first point is the first loss
  EXPECT_DOUBLE_EQ(s[1].second, (0.25 * 4.0 + 0.5 * 2.0) / 0.75);
  for (size_t i = 0; i < s.size(); ++i) {
    EXPECT_EQ(s[i].first, raw[i].first);
    EXPECT_GT(s[i].second, 2.0);
    EXPECT_LT(s[i].second, 4.0 + 1e-12);
  }
  EXPECT_DOUBLE_EQ(ema_smooth({{1, 3.0}, {2, 3.0}, {3, 3.0}}, 0.9)[2].second, 3.0);
  EXPECT_GT(ema_beta_for(1000), ema_beta_for(30));
}

}  // namespace
}  // namespace peft
