// loss.svg: training and evaluation loss against step, as a self-contained SVG line chart with
// labelled axes (no plotting library needed to read it: any browser shows it).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace peft {

using PlotPoints = std::vector<std::pair<double, double>>;  // (step, loss)

struct PlotSeries {
  PlotSeries() = default;
  PlotSeries(std::string label_, std::string color_, PlotPoints points_)
      : label(std::move(label_)), color(std::move(color_)), points(std::move(points_)) {}

  std::string label;
  std::string color;  // CSS colour
  PlotPoints points;
  bool markers = false;  // a circle on every point (evaluations: few and far between)
  double opacity = 1.0;  // < 1: a faint raw curve behind its smoothed version
  double width = 1.5;    // stroke width
};

// Tick labels are multiples of a 1/2/5 step, never "-0"; the title is escaped.
std::string render_loss_svg(const std::vector<PlotSeries>& series, const std::string& title);

// Exponential moving average debiased as TensorBoard does:
//   m_k = β m_{k-1} + (1 - β) y_k, m_0 = 0;  shown: m_k / (1 - β^k)
// so the first points are not pulled toward 0. Non-finite losses are skipped.
PlotPoints ema_smooth(const PlotPoints& points, double beta);

// The smoothing the loss plot uses for n points: an EMA spanning about n / 10 steps (at least 2,
// at most 50), β = 1 - 2 / (span + 1).
double ema_beta_for(size_t n);

}  // namespace peft
