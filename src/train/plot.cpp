#include "train/plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace peft {
namespace {

// A "nice" tick step (1, 2 or 5 × 10^k) giving about `count` ticks over [lo, hi].
double tick_step(double lo, double hi, int count) {
  const double raw = (hi - lo) / std::max(1, count);
  if (!(raw > 0)) return 1;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else
      out += c;
  }
  return out;
}

}  // namespace

std::string render_loss_svg(const std::vector<PlotSeries>& series, const std::string& title) {
  const double width = 720, height = 420, left = 70, right = 20, top = 40, bottom = 55;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const PlotSeries& s : series)
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad, y1 += pad;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (width - left - right); };
  auto py = [&](double y) { return top + (y1 - y) / (y1 - y0) * (height - top - bottom); };

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} "
      "{1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{3}</text>\n",
      width, height, width / 2, escape(title));
  const double xs = tick_step(x0, x1, 8), ys = tick_step(y0, y1, 6);
  // Ticks are k·step for whole k (no drift from repeated addition); zero prints as 0, not -0.
  auto tick = [](double k, double step) {
    const double t = k * step;
    return std::abs(t) < 1e-9 * step ? 0.0 : t;
  };
  for (double k = std::ceil(x0 / xs - 1e-9); tick(k, xs) <= x1 + 1e-9 * xs; ++k)
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>"
        "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4:g}</text>\n",
        px(tick(k, xs)), top, height - bottom, height - bottom + 16, tick(k, xs));
  for (double k = std::ceil(y0 / ys - 1e-9); tick(k, ys) <= y1 + 1e-9 * ys; ++k)
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:.4g}</text>\n",
        left, py(tick(k, ys)), width - right, left - 6, py(tick(k, ys)) + 4, tick(k, ys));
  svg += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n"
      "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n"
      "<text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">loss "
      "(nats/token)</text>\n",
      left, top, width - left - right, height - top - bottom, (left + width - right) / 2,
      height - 14, (top + height - bottom) / 2, (top + height - bottom) / 2);
  double legend_y = top + 16;
  for (const PlotSeries& s : series) {
    if (s.points.empty()) continue;
    std::string path;
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      path += fmt::format("{}{:.1f},{:.1f}", path.empty() ? "M" : " L", px(x), py(y));
    }
    const std::string opacity =
        s.opacity < 1.0 ? fmt::format(" stroke-opacity=\"{:.2f}\"", s.opacity) : "";
    if (s.points.size() > 1)
      svg += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\"{}/>\n",
                         path, s.color, s.width, opacity);
    if (s.markers || s.points.size() == 1) {
      svg += fmt::format("<g class=\"markers\" fill=\"{}\">", s.color);
      for (auto [x, y] : s.points)
        if (std::isfinite(y))
          svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\"/>", px(x), py(y));
      svg += "</g>\n";
    }
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"2\"{7}/>"
        "{8}<text x=\"{4}\" y=\"{5}\">{6}</text>\n",
        width - right - 130, legend_y, width - right - 110, s.color, width - right - 104,
        legend_y + 4, escape(s.label), opacity,
        s.markers ? fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"{}\"/>",
                                width - right - 120, legend_y, s.color)
                  : "");
    legend_y += 16;
  }
  return svg + "</svg>\n";
}

PlotPoints ema_smooth(const PlotPoints& points, double beta) {
  PlotPoints out;
  double m = 0, weight = 0;  // weight = 1 - β^k
  for (auto [x, y] : points) {
    if (!std::isfinite(y)) continue;
    m = beta * m + (1 - beta) * y;
    weight = beta * weight + (1 - beta);
    out.emplace_back(x, m / weight);
  }
  return out;
}

double ema_beta_for(size_t n) {
  const double span = std::clamp(double(n) / 10.0, 2.0, 50.0);
  return 1.0 - 2.0 / (span + 1.0);
}

}  // namespace peft
