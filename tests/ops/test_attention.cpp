#include <gtest/gtest.h>

#include <cmath>

#include "core/threads.h"
#include "kernels/cpu_features.h"
#include "op_check.h"
#include "ops/attention.h"

namespace peft {
namespace {
using testing::Vec;
using testing::Vecs;

// One attention problem: shapes, masks (empty: none) and tile sizes.
struct AttnCase {
  const char* name;
  int64_t B, Tq, Tk, H, Hkv, D;
  bool causal = true;
  int64_t P = 0, Bp = 0;                  // prefix length and prefix batch (1: shared)
  std::vector<int32_t> key_mask = {};     // [B·Tk]
  std::vector<int32_t> segments = {};     // [B·T]
  std::vector<int32_t> prefix_mask = {};  // [B·P]
  bool f32_masks = false;                 // pass the masks as f32 tensors instead of i32
  int64_t block_q = 64, block_k = 64;
};

// gtest prints a failing case by this name rather than as raw bytes.
void PrintTo(const AttnCase& c, std::ostream* os) {
  *os << c.name;
}

Tensor mask_tensor(const std::vector<int32_t>& m, Shape shape, bool as_f32) {
  if (!as_f32) return Tensor::from_vector_i32(m, std::move(shape));
  return Tensor::from_vector(std::vector<float>(m.begin(), m.end()), std::move(shape));
}

AttentionOptions options_for(const AttnCase& c) {
  AttentionOptions o;
  o.causal = c.causal;
  o.block_q = c.block_q, o.block_k = c.block_k;
  if (!c.key_mask.empty()) o.key_mask = mask_tensor(c.key_mask, {c.B, c.Tk}, c.f32_masks);
  if (!c.segments.empty()) o.segment_ids = Tensor::from_vector_i32(c.segments, {c.B, c.Tq});
  if (!c.prefix_mask.empty()) o.prefix_mask = mask_tensor(c.prefix_mask, {c.B, c.P}, c.f32_masks);
  return o;
}

std::vector<testing::OpInput> inputs_for(const AttnCase& c) {
  std::vector<testing::OpInput> in = {
      {{c.B, c.Tq, c.H, c.D}}, {{c.B, c.Tk, c.Hkv, c.D}}, {{c.B, c.Tk, c.Hkv, c.D}}};
  if (c.P) {
    in.push_back({{c.Bp, c.P, c.Hkv, c.D}});
    in.push_back({{c.Bp, c.P, c.Hkv, c.D}});
  }
  return in;
}

Var run_attention(const AttnCase& c, const std::vector<Var>& in) {
  return attention(in[0], in[1], in[2], options_for(c), c.P ? in[3] : nullptr,
                   c.P ? in[4] : nullptr);
}

// softmax(q·kᵀ / √D) · v in f64 over the keys each query may see (prefix slots first); a query
// that sees nothing gives zeros. Inputs: q, k, v[, prefix_k, prefix_v].
Vec attention_ref(const Vecs& in, const AttnCase& c) {
  const Vec &q = in[0], &k = in[1], &v = in[2];
  const double scale = 1.0 / std::sqrt(double(c.D));
  const int64_t group = c.H / c.Hkv;
  Vec out(size_t(c.B * c.Tq * c.H * c.D), 0.0);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t i = 0; i < c.Tq; ++i) {
        const double* qi = &q[size_t(((b * c.Tq + i) * c.H + h) * c.D)];
        std::vector<std::pair<double, const double*>> seen;  // (score, value row)
        auto add = [&](const double* kj, const double* vj) {
          double s = 0;
          for (int64_t d = 0; d < c.D; ++d) s += qi[d] * kj[d];
          seen.push_back({scale * s, vj});
        };
        for (int64_t p = 0; p < c.P; ++p) {
          if (!c.prefix_mask.empty() && !c.prefix_mask[size_t(b * c.P + p)]) continue;
          const size_t o = size_t((((c.Bp == 1 ? 0 : b) * c.P + p) * c.Hkv + h / group) * c.D);
          add(&in[3][o], &in[4][o]);
        }
        for (int64_t j = 0; j < c.Tk; ++j) {
          if (!c.key_mask.empty() && !c.key_mask[size_t(b * c.Tk + j)]) continue;
          if (c.causal && j > i + c.Tk - c.Tq) continue;
          if (!c.segments.empty() &&
              c.segments[size_t(b * c.Tq + i)] != c.segments[size_t(b * c.Tk + j)])
            continue;
          const size_t o = size_t(((b * c.Tk + j) * c.Hkv + h / group) * c.D);
          add(&k[o], &v[o]);
        }
        if (seen.empty()) continue;
        double m = -INFINITY, sum = 0;
        for (auto& [s, row] : seen) m = std::max(m, s);
        for (auto& [s, row] : seen) sum += std::exp(s - m);
        double* o = &out[size_t(((b * c.Tq + i) * c.H + h) * c.D)];
        for (auto& [s, row] : seen)
          for (int64_t d = 0; d < c.D; ++d) o[d] += std::exp(s - m) / sum * row[d];
      }
  return out;
}

class AttentionTest : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttentionTest, ForwardAndBackwardMatchF64Reference) {
  const AttnCase c = GetParam();
  testing::check_op(
      inputs_for(c), [&](const std::vector<Var>& in) { return run_attention(c, in); },
      [&](const Vecs& in) { return attention_ref(in, c); }, tol::kReductionAbs, tol::kReductionRel);
}

// Tiny shapes (finite differences cost inputs × forward); tiles of 2–3 rows so that every case
// crosses tile edges, and odd sizes (1, primes) throughout.
INSTANTIATE_TEST_SUITE_P(
    Cases, AttentionTest,
    ::testing::Values(
        AttnCase{.name = "single", .B = 1, .Tq = 1, .Tk = 1, .H = 1, .Hkv = 1, .D = 1},
        AttnCase{.name = "causal_gqa",
                 .B = 2,
                 .Tq = 5,
                 .Tk = 5,
                 .H = 4,
                 .Hkv = 2,
                 .D = 3,
                 .block_q = 2,
                 .block_k = 3},
        AttnCase{.name = "bidirectional_mqa_padding",
                 .B = 2,
                 .Tq = 7,
                 .Tk = 7,
                 .H = 3,
                 .Hkv = 1,
                 .D = 5,
                 .causal = false,
                 .key_mask = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
                 .block_q = 3,
                 .block_k = 2},
        AttnCase{.name = "causal_left_padding_f32_mask",
                 .B = 2,
                 .Tq = 6,
                 .Tk = 6,
                 .H = 2,
                 .Hkv = 2,
                 .D = 4,
                 .key_mask = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
                 .f32_masks = true,
                 .block_q = 4,
                 .block_k = 4},
        AttnCase{.name = "prefix_per_batch",
                 .B = 2,
                 .Tq = 4,
                 .Tk = 4,
                 .H = 2,
                 .Hkv = 1,
                 .D = 3,
                 .P = 3,
                 .Bp = 2,
                 .key_mask = {1, 1, 1, 1, 1, 1, 1, 0},
                 .prefix_mask = {1, 1, 1, 1, 0, 1},
                 .block_q = 3,
                 .block_k = 2},
        AttnCase{.name = "prefix_shared_bidirectional",
                 .B = 3,
                 .Tq = 3,
                 .Tk = 3,
                 .H = 2,
                 .Hkv = 2,
                 .D = 2,
                 .causal = false,
                 .P = 2,
                 .Bp = 1,
                 .block_k = 1},
        AttnCase{.name = "segments",
                 .B = 2,
                 .Tq = 7,
                 .Tk = 7,
                 .H = 2,
                 .Hkv = 1,
                 .D = 3,
                 .segments = {0, 0, 0, 1, 1, 2, 2, 5, 5, 5, 5, 5, 5, 5},
                 .block_q = 3,
                 .block_k = 2},
        AttnCase{.name = "segments_bidirectional_prefix",
                 .B = 1,
                 .Tq = 6,
                 .Tk = 6,
                 .H = 2,
                 .Hkv = 2,
                 .D = 3,
                 .causal = false,
                 .P = 2,
                 .Bp = 1,
                 .segments = {3, 3, 3, 4, 4, 4},
                 .block_q = 4,
                 .block_k = 4},
        AttnCase{.name = "cache_queries",
                 .B = 2,
                 .Tq = 3,
                 .Tk = 7,
                 .H = 2,
                 .Hkv = 1,
                 .D = 3,
                 .block_q = 2,
                 .block_k = 3},
        AttnCase{.name = "fully_masked_rows",
                 .B = 2,
                 .Tq = 5,
                 .Tk = 5,
                 .H = 2,
                 .Hkv = 1,
                 .D = 3,
                 .P = 2,
                 .Bp = 2,
                 .key_mask = {0, 0, 1, 1, 1, 0, 0, 0, 0, 0},
                 .prefix_mask = {0, 0, 0, 0},
                 .block_q = 2,
                 .block_k = 2}),
    [](const ::testing::TestParamInfo<AttnCase>& info) { return std::string(info.param.name); });

// Random q, k, v (and prefix) as constant tensors for the larger, non-FD tests.
AttentionTensors random_tensors(const AttnCase& c, uint64_t seed) {
  std::vector<Tensor> t;
  for (const testing::OpInput& in : inputs_for(c))
    t.push_back(
        testing::to_tensor(testing::random_vec(size_t(shape_numel(in.shape)), seed++), in.shape));
  AttentionTensors a{.q = t[0], .k = t[1], .v = t[2]};
  if (c.P) a.prefix_k = t[3], a.prefix_v = t[4];
  return a;
}

// Gradients of Σ g ⊙ out for every input, by the fused op (fused) or the naive one.
struct Grads {
  Vec out = {}, dq = {}, dk = {}, dv = {}, dpk = {}, dpv = {};
};

Grads fused_grads(const AttnCase& c, const AttentionTensors& in, const Tensor& g) {
  const AttentionOptions o = options_for(c);
  Tensor out = Tensor::zeros(in.q.shape()), lse = Tensor::zeros({c.B, c.Tq, c.H});
  attention_forward(in, o, out, lse);
  AttentionTensors d{.q = Tensor::zeros(in.q.shape()),
                     .k = Tensor::zeros(in.k.shape()),
                     .v = Tensor::zeros(in.v.shape())};
  if (c.P)
    d.prefix_k = Tensor::zeros(in.prefix_k.shape()),
    d.prefix_v = Tensor::zeros(in.prefix_v.shape());
  attention_backward(g, in, out, lse, o, d);
  Grads r{.out = testing::to_vec(out),
          .dq = testing::to_vec(d.q),
          .dk = testing::to_vec(d.k),
          .dv = testing::to_vec(d.v)};
  if (c.P) r.dpk = testing::to_vec(d.prefix_k), r.dpv = testing::to_vec(d.prefix_v);
  return r;
}

Grads naive_grads(const AttnCase& c, const AttentionTensors& in, const Tensor& g) {
  const AttentionOptions o = options_for(c);
  Tensor out = Tensor::zeros(in.q.shape()), probs = Tensor::zeros({c.B, c.H, c.Tq, c.P + c.Tk});
  attention_naive_forward(in, o, out, probs);
  AttentionTensors d{.q = Tensor::zeros(in.q.shape()),
                     .k = Tensor::zeros(in.k.shape()),
                     .v = Tensor::zeros(in.v.shape())};
  if (c.P)
    d.prefix_k = Tensor::zeros(in.prefix_k.shape()),
    d.prefix_v = Tensor::zeros(in.prefix_v.shape());
  attention_naive_backward(g, in, probs, o, d);
  Grads r{.out = testing::to_vec(out),
          .dq = testing::to_vec(d.q),
          .dk = testing::to_vec(d.k),
          .dv = testing::to_vec(d.v)};
  if (c.P) r.dpk = testing::to_vec(d.prefix_k), r.dpv = testing::to_vec(d.prefix_v);
  return r;
}

void expect_grads_close(const Grads& a, const Grads& b, double abs, double rel) {
  EXPECT_TRUE(testing::all_close(a.out, b.out, abs, rel)) << "out";
  EXPECT_TRUE(testing::all_close(a.dq, b.dq, abs, rel)) << "dq";
  EXPECT_TRUE(testing::all_close(a.dk, b.dk, abs, rel)) << "dk";
  EXPECT_TRUE(testing::all_close(a.dv, b.dv, abs, rel)) << "dv";
  EXPECT_TRUE(testing::all_close(a.dpk, b.dpk, abs, rel)) << "dprefix_k";
  EXPECT_TRUE(testing::all_close(a.dpv, b.dpv, abs, rel)) << "dprefix_v";
}

TEST(Attention, FusedMatchesNaiveAcrossManyTiles) {
  // Two 64-row tiles, the second ragged; GQA, padding, a prefix, causal and not.
  for (const bool causal : {true, false}) {
    AttnCase c{.name = "",
               .B = 2,
               .Tq = 70,
               .Tk = 70,
               .H = 4,
               .Hkv = 2,
               .D = 13,
               .causal = causal,
               .P = 5,
               .Bp = 2};
    c.key_mask.assign(size_t(c.B * c.Tk), 1);
    for (int64_t j = 61; j < c.Tk; ++j) c.key_mask[size_t(c.Tk + j)] = 0;  // batch 1 padded
    const AttentionTensors in = random_tensors(c, 3);
    const Tensor g = testing::to_tensor(testing::random_vec(size_t(in.q.numel()), 9), in.q.shape());
    expect_grads_close(fused_grads(c, in, g), naive_grads(c, in, g), tol::kReductionAbs,
                       tol::kReductionRel);
  }
}

TEST(Attention, EverySimdLevelMatchesNaive) {
  // The tiles are compiled once per SIMD level; the other tests run only the best one.
  AttnCase c{.name = "",
             .B = 2,
             .Tq = 37,
             .Tk = 37,
             .H = 4,
             .Hkv = 2,
             .D = 19,
             .P = 3,
             .Bp = 1,
             .block_q = 16,
             .block_k = 8};
  c.key_mask.assign(size_t(c.B * c.Tk), 1);
  c.key_mask[3] = 0;
  const AttentionTensors in = random_tensors(c, 23);
  const Tensor g = testing::to_tensor(testing::random_vec(size_t(in.q.numel()), 24), in.q.shape());
  const Grads naive = naive_grads(c, in, g);
  const SimdLevel before = simd_level();
  for (int level = 0; level <= int(simd_level_supported()); ++level) {
    set_simd_level(SimdLevel(level));
    SCOPED_TRACE(simd_level_name(SimdLevel(level)));
    expect_grads_close(fused_grads(c, in, g), naive, tol::kReductionAbs, tol::kReductionRel);
  }
  set_simd_level(before);
}

TEST(Attention, GqaMatchesRepeatedKvHeads) {
  const AttnCase gqa{
      .name = "", .B = 1, .Tq = 9, .Tk = 9, .H = 6, .Hkv = 2, .D = 5, .block_q = 4, .block_k = 4};
  AttnCase mha = gqa;
  mha.Hkv = 6;
  const AttentionTensors in = random_tensors(gqa, 5);
  auto repeat = [&](const Tensor& kv) {  // [B, T, Hkv, D] -> [B, T, H, D], head h = kv h / 3
    Tensor r = Tensor::zeros({1, 9, 6, 5});
    for (int64_t t = 0; t < 9; ++t)
      for (int64_t h = 0; h < 6; ++h)
        for (int64_t d = 0; d < 5; ++d)
          r.data<float>()[(t * 6 + h) * 5 + d] = kv.data<float>()[(t * 2 + h / 3) * 5 + d];
    return r;
  };
  const AttentionTensors rep{.q = in.q, .k = repeat(in.k), .v = repeat(in.v)};
  const Tensor g = testing::to_tensor(testing::random_vec(size_t(in.q.numel()), 8), in.q.shape());
  const Grads a = fused_grads(gqa, in, g), b = fused_grads(mha, rep, g);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.dq, b.dq);
  for (const auto& [ours, full] : {std::pair{a.dk, b.dk}, std::pair{a.dv, b.dv}}) {
    Vec summed(ours.size(), 0.0);  // a kv head's gradient is the sum over its query heads
    for (size_t i = 0; i < full.size(); ++i) {
      const size_t t = i / 30, h = i / 5 % 6, d = i % 5;
      summed[t * 10 + h / 3 * 5 + d] += full[i];
    }
    EXPECT_TRUE(testing::all_close(ours, summed, tol::kReorderAbs, tol::kReorderRel));
  }
}

TEST(Attention, SegmentsMatchSeparateSequences) {
  // Two records packed into one row with segment ids attend exactly as when run one by one.
  const int64_t T1 = 5, T2 = 4, H = 2, D = 3;
  AttnCase packed{.name = "",
                  .B = 1,
                  .Tq = T1 + T2,
                  .Tk = T1 + T2,
                  .H = H,
                  .Hkv = H,
                  .D = D,
                  .block_q = 3,
                  .block_k = 2};
  packed.segments = {7, 7, 7, 7, 7, 8, 8, 8, 8};
  const AttentionTensors in = random_tensors(packed, 11);
  const Tensor g = testing::to_tensor(testing::random_vec(size_t(in.q.numel()), 12), in.q.shape());
  const Grads whole = fused_grads(packed, in, g);
  int64_t start = 0;
  for (const int64_t len : {T1, T2}) {
    auto rows = [&](const Tensor& t) {  // tokens [start, start + len) of batch row 0
      return t.view({(T1 + T2), H * D}).slice_rows(start, start + len).clone().view({1, len, H, D});
    };
    const AttnCase one{.name = "", .B = 1, .Tq = len, .Tk = len, .H = H, .Hkv = H, .D = D};
    const Grads part =
        fused_grads(one, {.q = rows(in.q), .k = rows(in.k), .v = rows(in.v)}, rows(g));
    const size_t o = size_t(start * H * D), n = size_t(len * H * D);
    auto slice = [&](const Vec& v) { return Vec(v.begin() + long(o), v.begin() + long(o + n)); };
    EXPECT_TRUE(testing::all_close(slice(whole.out), part.out, tol::kReorderAbs, tol::kReorderRel));
    EXPECT_TRUE(testing::all_close(slice(whole.dq), part.dq, tol::kReorderAbs, tol::kReorderRel));
    EXPECT_TRUE(testing::all_close(slice(whole.dk), part.dk, tol::kReorderAbs, tol::kReorderRel));
    EXPECT_TRUE(testing::all_close(slice(whole.dv), part.dv, tol::kReorderAbs, tol::kReorderRel));
    start += len;
  }
}

TEST(Attention, CacheQueriesMatchLastRowsOfFullCausal) {
  // Tq < Tk: the queries are the last Tq positions (decoding with a KV cache).
  const AttnCase full{.name = "", .B = 1, .Tq = 8, .Tk = 8, .H = 2, .Hkv = 1, .D = 4};
  const AttentionTensors in = random_tensors(full, 13);
  Tensor out = Tensor::zeros(in.q.shape()), lse = Tensor::zeros({1, 8, 2});
  attention_forward(in, {}, out, lse);
  const Tensor q_last = in.q.view({8, 8}).slice_rows(5, 8).clone().view({1, 3, 2, 4});
  Tensor out_last = Tensor::zeros({1, 3, 2, 4}), lse_last = Tensor::zeros({1, 3, 2});
  attention_forward({.q = q_last, .k = in.k, .v = in.v}, {}, out_last, lse_last);
  const std::vector<float> all = out.to_vector();
  EXPECT_EQ(out_last.to_vector(), std::vector<float>(all.begin() + 5 * 8, all.end()));
}

TEST(Attention, FullyMaskedRowsGiveZerosNotNaN) {
  // Batch 1 has every key padded; in batch 0 the first query sees only a padded key.
  const AttnCase c{.name = "",
                   .B = 2,
                   .Tq = 4,
                   .Tk = 4,
                   .H = 2,
                   .Hkv = 1,
                   .D = 3,
                   .key_mask = {0, 1, 1, 1, 0, 0, 0, 0}};
  const AttentionTensors in = random_tensors(c, 17);
  const Tensor g = testing::to_tensor(testing::random_vec(size_t(in.q.numel()), 18), in.q.shape());
  for (const Grads& r : {fused_grads(c, in, g), naive_grads(c, in, g)}) {
    for (const Vec* v : {&r.out, &r.dq, &r.dk, &r.dv})
      for (double x : *v) ASSERT_TRUE(std::isfinite(x));
    for (int64_t d = 0; d < 6; ++d) EXPECT_EQ(r.out[size_t(d)], 0.0);  // batch 0, query 0
    for (size_t i = 24; i < 48; ++i) EXPECT_EQ(r.out[i], 0.0);         // batch 1
    for (size_t i = 24; i < 48; ++i) EXPECT_EQ(r.dq[i], 0.0);
  }
}

TEST(Attention, BitwiseIdenticalAcrossThreadCounts) {
  const AttnCase c{.name = "",
                   .B = 2,
                   .Tq = 70,
                   .Tk = 70,
                   .H = 4,
                   .Hkv = 2,
                   .D = 8,
                   .P = 3,
                   .Bp = 1,
                   .block_q = 16,
                   .block_k = 16};
  const AttentionTensors in = random_tensors(c, 19);
  const Tensor g = testing::to_tensor(testing::random_vec(size_t(in.q.numel()), 20), in.q.shape());
  const int before = num_threads();
  set_num_threads(1);
  const Grads one = fused_grads(c, in, g);
  set_num_threads(2);
  const Grads two = fused_grads(c, in, g);
  set_num_threads(before);
  EXPECT_EQ(one.out, two.out);
  EXPECT_EQ(one.dq, two.dq);
  EXPECT_EQ(one.dk, two.dk);
  EXPECT_EQ(one.dv, two.dv);
  EXPECT_EQ(one.dpk, two.dpk);
  EXPECT_EQ(one.dpv, two.dpv);
}

TEST(Attention, NothingIsRecordedWithoutTrainableInputs) {
  Tape tape;
  Var y = attention(constant(Tensor::zeros({1, 3, 2, 4})), constant(Tensor::zeros({1, 3, 1, 4})),
                    constant(Tensor::zeros({1, 3, 1, 4})));
  EXPECT_EQ(tape.size(), 0u);
  EXPECT_FALSE(y->requires_grad);
}

TEST(Attention, NoScoreMatrixIsAllocated) {
  // T = 2048: one head's scores would take 16 MiB, the fused forward + backward needs O(T·D)
  // (D = 2 keeps the work small while the score matrix stays large). No warm-up: thread pools
  // and allocator arenas cost well under the bound.
  const AttnCase c{.name = "", .B = 1, .Tq = 2048, .Tk = 2048, .H = 1, .Hkv = 1, .D = 2};
  const int64_t score_bytes = c.H * c.Tq * c.Tk * 4;
  const AttentionTensors in = random_tensors(c, 21);
  const Tensor g = testing::to_tensor(testing::random_vec(size_t(in.q.numel()), 22), in.q.shape());
  const int64_t fused = testing::peak_rss_growth([&] { fused_grads(c, in, g); });
  if (fused < 0) GTEST_SKIP() << "/proc offers no resettable peak RSS here";
  EXPECT_LT(fused, score_bytes / 4) << "peak growth " << fused << " bytes";
  // The probe does see a score matrix when there is one.
  const int64_t naive = testing::peak_rss_growth([&] {
    Tensor out = Tensor::zeros(in.q.shape()), probs = Tensor::zeros({1, c.H, c.Tq, c.Tk});
    attention_naive_forward(in, options_for(c), out, probs);
  });
  // Allocator reuse of freed pages blurs the probe a little.
  EXPECT_GE(naive, score_bytes * 3 / 4) << "peak growth " << naive << " bytes";
}

}  // namespace
}  // namespace peft
