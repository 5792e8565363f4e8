#include <gtest/gtest.h>

#include <cmath>

#include "kernels/gemm.h"
#include "op_check.h"
#include "ops/cross_entropy.h"
#include "ops/linear.h"

namespace peft {
namespace {
using testing::Vec;

// Σ over non-ignored rows of logsumexp(z_i) − z_i[t_i], z_i = W · h_i, divided by normaliser
// (0: by the count; nothing counted: 0), in f64.
Vec cross_entropy_ref(const Vec& h, const Vec& w, const std::vector<int32_t>& t, int64_t C,
                      int64_t V, double normaliser = 0) {
  const int64_t N = int64_t(t.size());
  double sum = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < N; ++i) {
    if (t[size_t(i)] == -100) continue;
    Vec z(size_t(V), 0.0);
    double m = -INFINITY;
    for (int64_t v = 0; v < V; ++v) {
      for (int64_t c = 0; c < C; ++c) z[size_t(v)] += h[size_t(i * C + c)] * w[size_t(v * C + c)];
      m = std::max(m, z[size_t(v)]);
    }
    double s = 0;
    for (double zv : z) s += std::exp(zv - m);
    sum += m + std::log(s) - z[size_t(t[size_t(i)])];
    ++count;
  }
  const double norm = normaliser > 0 ? normaliser : (count ? double(count) : 1.0);
  return {sum / norm};
}

// Targets spread over the vocabulary, every ignore_every-th one ignored (0: none).
std::vector<int32_t> make_targets(int64_t n, int64_t vocab, int64_t ignore_every) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    t[size_t(i)] = (ignore_every && i % ignore_every == 1) ? -100 : int32_t((7 * i + 3) % vocab);
  return t;
}

struct CeCase {
  int64_t N, C, V, chunk, ignore_every;
};

void PrintTo(const CeCase& c, std::ostream* os) {
  *os << "N " << c.N << ", C " << c.C << ", V " << c.V << ", chunk " << c.chunk << ", ignore every "
      << c.ignore_every;
}

class CrossEntropyTest : public ::testing::TestWithParam<CeCase> {};

TEST_P(CrossEntropyTest, ForwardAndBackwardMatchF64Reference) {
  const CeCase c = GetParam();
  const std::vector<int32_t> t = make_targets(c.N, c.V, c.ignore_every);
  const Tensor targets = Tensor::from_vector_i32(t, {c.N});
  CrossEntropyOptions opts;
  opts.chunk_rows = c.chunk;
  for (const bool weight_trainable : {true, false}) {
    testing::check_op(
        {{{c.N, c.C}, true, 1.0}, {{c.V, c.C}, weight_trainable, 1.0}},
        [&](const std::vector<Var>& in) { return cross_entropy(in[0], in[1], targets, opts); },
        [&](const testing::Vecs& in) { return cross_entropy_ref(in[0], in[1], t, c.C, c.V); },
        tol::kReductionAbs, tol::kReductionRel);
  }
}

// N = 1; N not a multiple of the chunk (7 rows in chunks of 3, 13 in 4); one chunk bigger than N;
// ignored rows in the middle of chunks; V prime and below the vector width.
INSTANTIATE_TEST_SUITE_P(Chunks, CrossEntropyTest,
                         ::testing::Values(CeCase{1, 1, 1, 128, 0}, CeCase{7, 5, 11, 3, 3},
                                           CeCase{13, 3, 37, 4, 4}, CeCase{5, 4, 6, 128, 2}));

TEST(CrossEntropy, FromLogitsMatchesF64Reference) {
  const int64_t N = 6, V = 13;
  const std::vector<int32_t> t = make_targets(N, V, 4);
  const Tensor targets = Tensor::from_vector_i32(t, {N});
  Vec eye(size_t(V * V), 0.0);  // logits = h · Iᵀ reuses the fused reference
  for (int64_t v = 0; v < V; ++v) eye[size_t(v * V + v)] = 1;
  testing::check_op(
      {{{N, V}, true, 3.0}},
      [&](const std::vector<Var>& in) { return cross_entropy_from_logits(in[0], targets); },
      [&](const testing::Vecs& in) { return cross_entropy_ref(in[0], eye, t, V, V); },
      tol::kForwardAbs, tol::kForwardRel);
}

struct Problem {
  int64_t N, C, V;
  Tensor h, w, targets;
};

Problem make_problem(int64_t N, int64_t C, int64_t V, int64_t ignore_every, uint64_t seed = 1) {
  return {N,
          C,
          V,
          testing::to_tensor(testing::random_vec(size_t(N * C), seed), {N, C}),
          testing::to_tensor(testing::random_vec(size_t(V * C), seed + 1), {V, C}),
          Tensor::from_vector_i32(make_targets(N, V, ignore_every), {N})};
}

struct Result {
  float loss;
  CrossEntropyStats stats;
  Vec dh, dw;
};

Result run(const Problem& p, const CrossEntropyOptions& opts, float seed = 1.0f) {
  Var h = variable(p.h), w = variable(p.w);
  Tape tape;
  Result r;
  Var loss = cross_entropy(h, w, p.targets, opts, &r.stats);
  r.loss = loss->value.to_vector()[0];
  tape.backward(loss, seed);
  r.dh = testing::to_vec(h->grad);
  r.dw = testing::to_vec(w->grad);
  return r;
}

TEST(CrossEntropy, ChunkSizeDoesNotChangeTheResult) {
  const Problem p = make_problem(37, 6, 29, 5);
  CrossEntropyOptions opts;
  opts.chunk_rows = 128;
  const Result whole = run(p, opts);
  for (int64_t chunk : {1, 3, 16}) {
    opts.chunk_rows = chunk;
    const Result r = run(p, opts);
    EXPECT_NEAR(r.loss, whole.loss, tol::kReorderRel * std::fabs(whole.loss)) << chunk;
    EXPECT_TRUE(testing::all_close(r.dh, whole.dh, tol::kReorderAbs, tol::kReorderRel)) << chunk;
    EXPECT_TRUE(testing::all_close(r.dw, whole.dw, tol::kReorderAbs, tol::kReorderRel)) << chunk;
  }
}

// top1 counts the targets that are their row's argmax, the first index winning ties (torch's
// argmax), in both the fused and the logits form.
TEST(CrossEntropy, Top1CountsArgmaxTargetsWithFirstIndexTies) {
  // Rows of logits over V = 4; the identity weight makes hidden = logits for the fused form.
  const std::vector<float> z = {0, 3, 1, 2,              // argmax 1
                                5, 5, 0, 0,              // tie: argmax 0
                                1, 1, 1, 9,              // argmax 3
                                2, 0, 0, 0};             // argmax 0
  const std::vector<int32_t> targets = {1, 1, 3, -100};  // hit, miss (tie), hit, ignored
  Tensor logits = Tensor::from_vector(z, {4, 4});
  Tensor t = Tensor::from_vector_i32(targets, {4});
  CrossEntropyStats from_logits;
  cross_entropy_from_logits(constant(logits), t, {}, &from_logits);
  EXPECT_EQ(from_logits.count, 3);
  EXPECT_EQ(from_logits.top1, 2);
  std::vector<float> eye(16, 0.0f);
  for (int i = 0; i < 4; ++i) eye[size_t(i * 5)] = 1.0f;
  CrossEntropyOptions one_row_chunks;
  one_row_chunks.chunk_rows = 1;
  CrossEntropyStats fused;
  cross_entropy(constant(logits), constant(Tensor::from_vector(eye, {4, 4})), t, one_row_chunks,
                &fused);
  EXPECT_EQ(fused.top1, 2);
}

TEST(CrossEntropy, AllTargetsIgnoredGivesZeroLossAndZeroGradients) {
  Problem p = make_problem(5, 4, 7, 0);
  p.targets = Tensor::from_vector_i32(std::vector<int32_t>(5, -100), {5});
  const Result r = run(p, {});
  EXPECT_EQ(r.loss, 0.0f);
  EXPECT_EQ(r.stats.count, 0);
  EXPECT_EQ(r.stats.sum, 0.0);
  for (double g : r.dh) EXPECT_EQ(g, 0.0);
  for (double g : r.dw) EXPECT_EQ(g, 0.0);
}

TEST(CrossEntropy, OutOfRangeTargetFailsNamingTheValue) {
  Problem p = make_problem(3, 4, 7, 0);
  for (int32_t bad : {7, 1000, -1}) {
    p.targets = Tensor::from_vector_i32({0, bad, 2}, {3});
    try {
      cross_entropy(constant(p.h), constant(p.w), p.targets);
      ADD_FAILURE() << "no error for target " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("target " + std::to_string(bad)), std::string::npos)
          << e.what();
    }
  }
}

TEST(CrossEntropy, ExplicitNormaliserGivesTokenWeightedMeanAcrossMicroBatches) {
  // Two micro-batches with different numbers of counted tokens: the sum of their losses divided
  // by the total count equals the mean over the concatenation, and so do the gradients.
  const Problem whole = make_problem(12, 5, 9, 3);
  Problem a = whole, b = whole;
  a.h = whole.h.slice_rows(0, 4), a.targets = whole.targets.slice_rows(0, 4);
  b.h = whole.h.slice_rows(4, 12), b.targets = whole.targets.slice_rows(4, 12);
  const Result full = run(whole, {});
  CrossEntropyStats sa, sb;
  {
    NoGradGuard no_grad;
    cross_entropy(constant(a.h), constant(a.w), a.targets, {}, &sa);
    cross_entropy(constant(b.h), constant(b.w), b.targets, {}, &sb);
  }
  EXPECT_EQ(sa.count + sb.count, full.stats.count);
  CrossEntropyOptions opts;
  opts.normaliser = double(sa.count + sb.count);
  const Result ra = run(a, opts), rb = run(b, opts);
  EXPECT_NEAR(ra.loss + rb.loss, full.loss, tol::kReorderAbs);
  EXPECT_NEAR((sa.sum + sb.sum) / double(full.stats.count), full.loss, tol::kReorderAbs);
  Vec dh = ra.dh, dw = ra.dw;
  dh.insert(dh.end(), rb.dh.begin(), rb.dh.end());
  for (size_t i = 0; i < dw.size(); ++i) dw[i] += rb.dw[i];
  EXPECT_TRUE(testing::all_close(dh, full.dh, tol::kReorderAbs, tol::kReorderRel));
  EXPECT_TRUE(testing::all_close(dw, full.dw, tol::kReorderAbs, tol::kReorderRel));
}

TEST(CrossEntropy, BackwardScalesStoredGradientsByTheUpstreamScalar) {
  const Problem p = make_problem(9, 4, 10, 4);
  Result one = run(p, {}, 1.0f);
  const Result scaled = run(p, {}, -2.5f);
  for (double& x : one.dh) x *= -2.5;
  for (double& x : one.dw) x *= -2.5;
  EXPECT_TRUE(testing::all_close(scaled.dh, one.dh, tol::kReorderAbs, tol::kReorderRel));
  EXPECT_TRUE(testing::all_close(scaled.dw, one.dw, tol::kReorderAbs, tol::kReorderRel));
}

TEST(CrossEntropy, FusedMatchesLinearThenLogits) {
  const Problem p = make_problem(21, 7, 40, 3);
  const Result fused = run(p, {});
  Var h = variable(p.h), w = variable(p.w);
  Tape tape;
  Var loss = cross_entropy_from_logits(linear(h, w), p.targets);
  tape.backward(loss);
  EXPECT_NEAR(loss->value.to_vector()[0], fused.loss, tol::kReductionRel * std::fabs(fused.loss));
  EXPECT_TRUE(testing::all_close(testing::to_vec(h->grad), fused.dh, tol::kReductionAbs,
                                 tol::kReductionRel));
  EXPECT_TRUE(testing::all_close(testing::to_vec(w->grad), fused.dw, tol::kReductionAbs,
                                 tol::kReductionRel));
}

TEST(CrossEntropy, StoredSmallerWeightsMatchTheirF32Values) {
  const Problem p = make_problem(10, 64, 300, 4);  // 300 rows: more than one conversion panel
  auto loss_and_dh = [&](const Tensor& h0, const Tensor& w) {
    Var h = variable(h0);
    Tape tape;
    Var loss = cross_entropy(h, constant(w), p.targets);
    tape.backward(loss);
    Vec out = testing::to_vec(h->grad);
    out.push_back(loss->value.to_vector()[0]);
    return out;
  };
  double w_max = 0;
  for (float v : p.w.to_vector()) w_max = std::max(w_max, double(std::fabs(v)));
  for (DType t : {DType::BF16, DType::F16, DType::Q8_0, DType::Q4_0}) {
    for (Bf16Mode mode : testing::bf16_modes_here()) {
      if (t != DType::BF16 && mode == Bf16Mode::Native) continue;
      const testing::Bf16ModeScope scope(mode);
      const Tensor stored = p.w.to(t), w32 = stored.to(DType::F32);
      if (mode == Bf16Mode::F32Panels) {
        EXPECT_TRUE(testing::all_close(loss_and_dh(p.h, stored), loss_and_dh(p.h, w32),
                                       tol::kReductionAbs, tol::kReductionRel))
            << dtype_name(t);
        continue;
      }
      // Native bf16 rounds h (forward) and dlogits (backward) to bf16. The reference takes the
      // rounded h, so the loss agrees to f32 accuracy; dh_i = (1/N) Σ_v (p − y)_iv W_v, with
      // Σ_v |p − y|_iv ≤ 2, moves by at most 2^-9 · 2 · max|W| / N from rounding dlogits.
      double n_tokens = 0;  // the loss is the mean over the targets that are not ignored
      for (int32_t target : make_targets(p.N, p.V, 4)) n_tokens += target != -100;
      Vec ours = loss_and_dh(p.h, stored), ref = loss_and_dh(testing::round_to_bf16(p.h), w32);
      EXPECT_NEAR(ours.back(), ref.back(), tol::kReductionRel * std::fabs(ref.back()));
      ours.pop_back(), ref.pop_back();
      const double dh_abs = std::ldexp(1.0, -9) * 2 * w_max / n_tokens;
      EXPECT_TRUE(testing::all_close(ours, ref, dh_abs, 0)) << "bf16 native";
    }
  }
}

TEST(CrossEntropy, LargeLogitsStayFinite) {
  Problem p = make_problem(4, 3, 5, 0);
  std::vector<float> big = p.h.to_vector();
  for (float& x : big) x *= 1000.0f;
  p.h = Tensor::from_vector(big, {4, 3});
  const Result r = run(p, {});
  EXPECT_TRUE(std::isfinite(r.loss));
  for (double g : r.dh) EXPECT_TRUE(std::isfinite(g));
}

TEST(CrossEntropy, LogitsNeverAllAlive) {
  // N · V logits would be 16 MiB; the fused op holds one 128-row chunk (2 MiB) at a time.
  const int64_t N = 1024, C = 8, V = 4096;
  const int64_t all_logits = N * V * 4;
  const Problem p = make_problem(N, C, V, 0);
  auto fused = [&] {
    Var h = variable(p.h), w = variable(p.w);
    Tape tape;
    tape.backward(cross_entropy(h, w, p.targets));
  };
  fused();  // warm up: the OpenMP worker threads' stacks appear on the first parallel call
  const int64_t grown = testing::peak_rss_growth(fused);
  if (grown < 0) GTEST_SKIP() << "/proc offers no resettable peak RSS here";
  EXPECT_LT(grown, all_logits / 2) << "peak growth " << grown << " bytes";
  // The probe does see a whole logits tensor when there is one.
  const int64_t unfused = testing::peak_rss_growth([&] {
    NoGradGuard no_grad;
    cross_entropy_from_logits(linear(constant(p.h), constant(p.w)), p.targets);
  });
  // Allocator reuse of freed pages blurs the probe a little.
  EXPECT_GE(unfused, all_logits * 3 / 4) << "peak growth " << unfused << " bytes";
}

}  // namespace
}  // namespace peft
