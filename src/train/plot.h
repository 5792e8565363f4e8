// loss.svg: training and evaluation loss against step, as a self-contained SVG line chart with
// labelled axes (no plotting library needed to read it: any browser shows it).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace peft {

struct PlotSeries {
  std::string label;
  std::string color;                              // CSS colour
  std::vector<std::pair<double, double>> points;  // (step, loss)
};

std::string render_loss_svg(const std::vector<PlotSeries>& series, const std::string& title);

}  // namespace peft
