#include "infer/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "core/error.h"

namespace peft {

int32_t sample_next_token(std::vector<float>& logits, const std::vector<int32_t>& seen,
                          const SamplingOptions& o, Rng& rng) {
  PEFT_CHECK(!logits.empty(), "no logits");
  if (o.repetition_penalty != 1.0f) {
    std::unordered_set<int32_t> once(seen.begin(), seen.end());
    for (int32_t id : once) {
      if (id < 0 || size_t(id) >= logits.size()) continue;
      float& z = logits[size_t(id)];
      z = z > 0 ? z / o.repetition_penalty : z * o.repetition_penalty;
    }
  }
  if (o.greedy || o.temperature <= 0.0f)
    return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());

  // Candidates sorted by logit, cut by top-k, then softmax at the temperature and cut by top-p.
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  size_t keep = order.size();
  if (o.top_k > 0) keep = std::min(keep, size_t(o.top_k));
  std::partial_sort(order.begin(), order.begin() + long(keep), order.end(),
                    [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
  order.resize(keep);
  std::vector<double> p(keep);
  const double top = logits[size_t(order[0])] / o.temperature;
  double sum = 0;
  for (size_t i = 0; i < keep; ++i)
    sum += p[i] = std::exp(logits[size_t(order[i])] / o.temperature - top);
  for (double& x : p) x /= sum;
  if (o.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p (at least one token)
    double mass = 0;
    size_t n = 0;
    while (n < keep && (n == 0 || mass < o.top_p)) mass += p[n++];
    p.resize(n);
    order.resize(n);
    for (double& x : p) x /= mass;
  }
  const double u = rng.uniform();
  double acc = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    acc += p[i];
    if (u < acc) return order[i];
  }
  return order.back();
}

}  // namespace peft
