#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/gemm.h"
#include "ops/softmax.h"

namespace peft {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();

// One attention call with its shapes resolved and its masks expanded to flags.
struct Problem {
  int64_t B = 0, Tq = 0, Tk = 0, H = 0, Hkv = 0, D = 0;
  int64_t P = 0, Bp = 1;  // prefix length and prefix batch (1: shared by the batch)
  int64_t group = 1;      // query heads per kv head
  int64_t off = 0;        // Tk − Tq: query i sits at key position i + off
  int64_t bq = 64, bk = 64;
  float scale = 1.0f;
  bool causal = true;
  const float *q = nullptr, *k = nullptr, *v = nullptr, *pk = nullptr, *pv = nullptr;
  std::vector<int32_t> key_ok;     // [B·Tk] 1 valid / 0 padding; empty: all valid
  std::vector<int32_t> prefix_ok;  // [B·P]; empty: all valid
  const int32_t* seg = nullptr;    // [B·T] segment ids, or null

  // Row j of the keys (or values) of batch b, kv head hk; prefix rows when prefix.
  const float* key_row(const float* base, const float* prefix_base, bool prefix, int64_t b,
                       int64_t hk, int64_t j) const {
    if (prefix) return prefix_base + (((Bp == 1 ? 0 : b) * P + j) * Hkv + hk) * D;
    return base + ((b * Tk + j) * Hkv + hk) * D;
  }
  int64_t ld_kv() const { return Hkv * D; }
  int64_t ld_q() const { return H * D; }
};

// A [rows, n] mask of i32 or f32 values (or [1, n], broadcast) as 0/1 flags [rows·n].
std::vector<int32_t> mask_flags(const Tensor& m, int64_t rows, int64_t n, const char* what) {
  PEFT_CHECK(m.ndim() == 2 && (m.dim(0) == rows || m.dim(0) == 1) && m.dim(1) == n &&
                 (m.dtype() == DType::I32 || m.dtype() == DType::F32),
             "attention: {} must be i32 or f32 [{}, {}], got {}", what, rows, n, m.describe());
  std::vector<int32_t> flags(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t src = m.dim(0) == 1 ? 0 : r;
    for (int64_t j = 0; j < n; ++j) {
      const bool ok = m.dtype() == DType::I32 ? m.data<int32_t>()[src * n + j] != 0
                                              : m.data<float>()[src * n + j] != 0.0f;
      flags[size_t(r * n + j)] = ok ? 1 : 0;
    }
  }
  return flags;
}

Problem make_problem(const AttentionTensors& in, const AttentionOptions& opts) {
  const Tensor &q = in.q, &k = in.k, &v = in.v;
  PEFT_CHECK(q.ndim() == 4 && k.ndim() == 4 && v.ndim() == 4 && q.dtype() == DType::F32 &&
                 k.dtype() == DType::F32 && v.dtype() == DType::F32,
             "attention: q, k, v must be f32 4-d, got {}, {}, {}", q.describe(), k.describe(),
             v.describe());
  Problem p;
  p.B = q.dim(0), p.Tq = q.dim(1), p.H = q.dim(2), p.D = q.dim(3);
  p.Tk = k.dim(1), p.Hkv = k.dim(2);
  PEFT_CHECK(
      k.shape() == v.shape() && k.dim(0) == p.B && k.dim(3) == p.D && p.Hkv > 0 && p.H % p.Hkv == 0,
      "attention: q {} with k {}, v {}", q.describe(), k.describe(), v.describe());
  PEFT_CHECK(in.prefix_k.defined() == in.prefix_v.defined(),
             "attention: prefix keys and values come together");
  if (in.prefix_k.defined()) {
    const Tensor &pk = in.prefix_k, &pv = in.prefix_v;
    PEFT_CHECK(pk.ndim() == 4 && pk.dtype() == DType::F32 && pk.shape() == pv.shape() &&
                   (pk.dim(0) == p.B || pk.dim(0) == 1) && pk.dim(2) == p.Hkv && pk.dim(3) == p.D,
               "attention: prefix k {} / v {} for k {}", pk.describe(), pv.describe(),
               k.describe());
    p.P = pk.dim(1), p.Bp = pk.dim(0);
    p.pk = pk.data<float>(), p.pv = pv.data<float>();
  }
  PEFT_CHECK(opts.block_q > 0 && opts.block_k > 0, "attention: blocks {} x {}", opts.block_q,
             opts.block_k);
  p.group = p.H / p.Hkv;
  p.off = p.Tk - p.Tq;
  p.bq = opts.block_q, p.bk = opts.block_k;
  p.scale = opts.scale != 0.0f ? opts.scale : float(1.0 / std::sqrt(double(p.D)));
  p.causal = opts.causal;
  p.q = q.data<float>(), p.k = k.data<float>(), p.v = v.data<float>();
  if (opts.key_mask.defined()) p.key_ok = mask_flags(opts.key_mask, p.B, p.Tk, "key_mask");
  if (opts.prefix_mask.defined()) {
    PEFT_CHECK(p.P > 0, "attention: a prefix mask without prefix keys");
    p.prefix_ok = mask_flags(opts.prefix_mask, p.B, p.P, "prefix_mask");
  }
  if (opts.segment_ids.defined()) {
    const Tensor& s = opts.segment_ids;
    PEFT_CHECK(p.Tq == p.Tk && s.dtype() == DType::I32 && s.ndim() == 2 && s.dim(0) == p.B &&
                   s.dim(1) == p.Tq,
               "attention: segment_ids must be i32 [B, T] with Tq == Tk, got {} for q {}, k {}",
               s.describe(), q.describe(), k.describe());
    p.seg = s.data<int32_t>();
  }
  return p;
}

// Flags of keys j0 .. j0+n of batch b (prefix slots when prefix): ok[j] (valid) and kseg[j]
// (segment id; 0 without segments, and for prefix slots, which every segment sees). Returns
// whether every key of the block is valid.
bool key_flags(const Problem& p, int64_t b, bool prefix, int64_t j0, int64_t n, int32_t* ok,
               int32_t* kseg) {
  const std::vector<int32_t>& flags = prefix ? p.prefix_ok : p.key_ok;
  const int64_t len = prefix ? p.P : p.Tk;
  bool all = true;
  for (int64_t j = 0; j < n; ++j) {
    ok[j] = flags.empty() ? 1 : flags[size_t(b * len + j0 + j)];
    all = all && ok[j];
    kseg[j] = (p.seg && !prefix) ? p.seg[b * p.Tk + j0 + j] : 0;
  }
  return all;
}

// The segment a query row belongs to (0 without segments).
int32_t query_segment(const Problem& p, int64_t b, int64_t i) {
  return p.seg ? p.seg[b * p.Tq + i] : 0;
}

// How many of the sequence's keys the query rows [i0, i0 + nq) can see at most.
int64_t visible_keys(const Problem& p, int64_t i0, int64_t nq) {
  if (!p.causal) return p.Tk;
  return std::clamp<int64_t>(i0 + nq + p.off, 0, p.Tk);
}

// The per-tile loops below are always inlined into one entry point per SIMD level (the end of
// this section), so the compiler vectorises them for AVX2 or AVX-512 where the CPU has them;
// simd_level() picks the variant at run time.
#define PEFT_INLINE [[gnu::always_inline]] inline

// s_j = −inf for the keys the query may not see: padding, another segment, or (causal) j > lim.
PEFT_INLINE void mask_row(float* s, int64_t n, const int32_t* ok, const int32_t* kseg, int32_t qseg,
                          int64_t lim) {
  const int32_t n32 = int32_t(n), lim32 = int32_t(std::clamp<int64_t>(lim, -1, n));
  for (int32_t j = 0; j < n32; ++j)
    s[j] = (ok[j] != 0 && kseg[j] == qseg && j <= lim32) ? s[j] : kNegInf;
}

// C[M, N] (+)= A[M, K] · B[K, N] on small row-major blocks (strides lda, ldb, ldc), the products
// of one tile. Full 4 × 2VW panels of C go through a register-blocked kernel written with the
// GCC / Clang vector type of VW floats (4 SSE, 8 AVX2, 16 AVX-512: one register): eight
// accumulators stay in registers for the whole K loop, one load of B feeds four FMAs. Plain
// loops got a quarter of that speed (the compiler keeps re-loading and re-storing C). The ragged
// edges use plain loops.
template <int VW>
PEFT_INLINE void block_gemm(const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                            int64_t ldc, int64_t M, int64_t N, int64_t K, bool accumulate) {
  typedef float V __attribute__((vector_size(VW * sizeof(float))));
  constexpr int64_t MR = 4, NR = 2 * VW;
  if (!accumulate)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t x = 0; x < N; ++x) C[i * ldc + x] = 0.0f;
  const int64_t M4 = M / MR * MR, N2 = N / NR * NR;
  for (int64_t i = 0; i < M4; i += MR) {
    const float* a = A + i * lda;
    for (int64_t x = 0; x < N2; x += NR) {
      V acc[MR][2] = {};
      for (int64_t k = 0; k < K; ++k) {
        V b0, b1;
        std::memcpy(&b0, B + k * ldb + x, sizeof b0);
        std::memcpy(&b1, B + k * ldb + x + VW, sizeof b1);
        for (int64_t r = 0; r < MR; ++r) {
          const float ar = a[r * lda + k];
          acc[r][0] += ar * b0;
          acc[r][1] += ar * b1;
        }
      }
      for (int64_t r = 0; r < MR; ++r)
        for (int64_t h = 0; h < 2; ++h) {
          float* c = C + (i + r) * ldc + x + h * VW;
          V v;
          std::memcpy(&v, c, sizeof v);
          v += acc[r][h];
          std::memcpy(c, &v, sizeof v);
        }
    }
  }
  // Edges: columns [N2, N) of the panel rows, then all columns of rows [M4, M).
  for (int64_t i = 0; i < M; ++i) {
    const int64_t x0 = i < M4 ? N2 : 0;
    if (x0 == N) continue;
    float* c = C + i * ldc;
    for (int64_t k = 0; k < K; ++k) {
      const float aik = A[i * lda + k];
      const float* b = B + k * ldb;
      for (int64_t x = x0; x < N; ++x) c[x] += aik * b[x];
    }
  }
}

// Query rows [i0, i0 + nq) of (b, h), times scale, contiguous [nq, D].
PEFT_INLINE void load_scaled_queries(const Problem& p, int64_t b, int64_t h, int64_t i0, int64_t nq,
                                     float* qs) {
  for (int64_t i = 0; i < nq; ++i) {
    const float* src = p.q + ((b * p.Tq + i0 + i) * p.H + h) * p.D;
    for (int64_t d = 0; d < p.D; ++d) qs[i * p.D + d] = p.scale * src[d];
  }
}

int64_t blocks(int64_t n, int64_t block) {
  return (n + block - 1) / block;
}

// x [Bx, T, Hx, D] as scale · x transposed per head, [Bx, Hx, D, T]: the score loops run over
// keys (or queries) in their innermost loop, so they read a key's dimension d for consecutive
// keys from one row. Done once per call; transposing per tile instead cost a quarter of the time.
std::vector<float> transpose_heads(const float* x, int64_t Bx, int64_t T, int64_t Hx, int64_t D,
                                   float scale) {
  std::vector<float> t(static_cast<size_t>(Bx * Hx * D * T));
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < Bx * Hx; ++bh) {
    const int64_t b = bh / Hx, h = bh % Hx;
    float* dst = t.data() + bh * D * T;
    for (int64_t i = 0; i < T; ++i) {
      const float* src = x + ((b * T + i) * Hx + h) * D;
      for (int64_t d = 0; d < D; ++d) dst[d * T + i] = scale * src[d];
    }
  }
  return t;
}

// Keys and values transposed per kv head (the sequence's and the prefix's).
struct KeysT {
  std::vector<float> k, v, pk, pv;
  // Column j0 of the transposed keys (or values) of batch b, kv head hk, and its row stride.
  std::pair<const float*, int64_t> block(const Problem& p, bool values, bool prefix, int64_t b,
                                         int64_t hk, int64_t j0) const {
    if (prefix) {
      const std::vector<float>& t = values ? pv : pk;
      return {t.data() + ((p.Bp == 1 ? 0 : b) * p.Hkv + hk) * p.D * p.P + j0, p.P};
    }
    const std::vector<float>& t = values ? v : k;
    return {t.data() + (b * p.Hkv + hk) * p.D * p.Tk + j0, p.Tk};
  }
};

KeysT transpose_keys(const Problem& p, bool values) {
  KeysT t;
  t.k = transpose_heads(p.k, p.B, p.Tk, p.Hkv, p.D, 1.0f);
  if (p.P) t.pk = transpose_heads(p.pk, p.Bp, p.P, p.Hkv, p.D, 1.0f);
  if (values) {
    t.v = transpose_heads(p.v, p.B, p.Tk, p.Hkv, p.D, 1.0f);
    if (p.P) t.pv = transpose_heads(p.pv, p.Bp, p.P, p.Hkv, p.D, 1.0f);
  }
  return t;
}

// What the tiles write (and, in the backward, read) besides q, k, v.
struct Buffers {
  float* out = nullptr;  // forward outputs
  float* lse_out = nullptr;
  const float* dout = nullptr;  // backward inputs
  const float* lse = nullptr;
  const float* delta = nullptr;   // D_i per (b, t, h)
  const KeysT* keys_t = nullptr;  // transposed keys (forward, dq) and values (dq)
  const float* qt = nullptr;      // scale · q transposed per head [B, H, D, Tq] (dk, dv)
  const float* dout_t = nullptr;  // dout transposed per head [B, H, D, Tq] (dk, dv)
  float *dq = nullptr, *dk = nullptr, *dv = nullptr, *dpk = nullptr, *dpv = nullptr;
};

// One unit of parallel work: query rows [start, start + len) of head `head` (forward, dq), or
// keys [start, start + len) of kv head `head`, of the sequence or the prefix (dk, dv).
struct Tile {
  int64_t b, head, start, len;
  bool prefix;
};

// Per-thread workspace, sized for the largest tile.
struct Scratch {
  explicit Scratch(const Problem& p)
      : qs(size_t(p.bq * p.D)),
        acc(size_t(std::max(p.bq, p.bk) * p.D)),
        acc2(size_t(p.bk * p.D)),
        s(size_t(p.bq * p.bk)),
        ds(size_t(p.bq * p.bk)),
        m(size_t(p.bq)),
        lse(size_t(p.bq)),
        delta(size_t(p.bq)),
        l(size_t(p.bq)),
        ok(size_t(p.bk)),
        kseg(size_t(p.bk)),
        qseg(size_t(p.bq)) {}
  std::vector<float> qs, acc, acc2, s, ds, m, lse, delta;
  std::vector<double> l;
  std::vector<int32_t> ok, kseg, qseg;
};

// ---- forward -------------------------------------------------------------------------------

// Query rows [i0, i0 + nq) of (b, h): online softmax over the prefix, then the visible keys.
template <int VW>
PEFT_INLINE void forward_tile(const Problem& p, const Buffers& io, const Tile& t, Scratch& w) {
  const int64_t b = t.b, h = t.head, i0 = t.start, nq = t.len;
  const int64_t D = p.D, bk = p.bk, hk = h / p.group, ld = p.ld_kv();
  float* qs = w.qs.data();    // [nq, D] scaled queries
  float* acc = w.acc.data();  // [nq, D] Σ_j exp(s_ij − m_i) v_j
  float* s = w.s.data();      // [nq, bk] scores, then probabilities
  float* m = w.m.data();      // [nq] running max
  double* l = w.l.data();     // [nq] running Σ_j exp(s_ij − m_i)
  load_scaled_queries(p, b, h, i0, nq, qs);
  std::fill(acc, acc + nq * D, 0.0f);
  std::fill(m, m + nq, kNegInf);
  std::fill(l, l + nq, 0.0);

  for (const bool prefix : {true, false}) {
    const int64_t nkeys = prefix ? p.P : visible_keys(p, i0, nq);
    for (int64_t j0 = 0; j0 < nkeys; j0 += bk) {
      const int64_t n = std::min(bk, nkeys - j0);
      const auto [kt, ldt] = io.keys_t->block(p, false, prefix, b, hk, j0);  // [D, n]
      block_gemm<VW>(qs, D, kt, ldt, s, bk, nq, n, D, false);  // s_ij = scale · q_i · k_j
      const bool all_ok = key_flags(p, b, prefix, j0, n, w.ok.data(), w.kseg.data());
      for (int64_t i = 0; i < nq; ++i) {
        float* si = s + i * bk;
        const int64_t lim = (prefix || !p.causal) ? n : i0 + i + p.off - j0;
        if (!all_ok || (p.seg && !prefix) || lim < n - 1)
          mask_row(si, n, w.ok.data(), w.kseg.data(), prefix ? 0 : query_segment(p, b, i0 + i),
                   lim);
        const float block_max = row_max(si, n);
        if (block_max == kNegInf) {  // nothing visible in this block: p = 0
          // (row_max skips NaN: NaN scores must still reach the output, never become p = 0)
          if (std::any_of(si, si + n, [](float x) { return std::isnan(x); })) l[i] = NAN;
          std::fill(si, si + n, 0.0f);
          continue;
        }
        // Online softmax: rescale what was summed under the old max m_i to the new one.
        const float m_new = std::max(m[i], block_max);
        const float correction = std::exp(m[i] - m_new);  // 0 while m_i = −inf
        l[i] = l[i] * correction + exp_shifted_sum(si, n, m_new, si);
        if (correction != 1.0f)
          for (int64_t d = 0; d < D; ++d) acc[i * D + d] *= correction;
        m[i] = m_new;
      }
      const float* vb = p.key_row(p.v, p.pv, prefix, b, hk, j0);
      block_gemm<VW>(s, bk, vb, ld, acc, D, nq, D, n, true);  // acc_i += Σ_j p_ij v_j
    }
  }
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t row = (b * p.Tq + i0 + i) * p.H + h;
    float* o = io.out + row * D;
    // Nothing visible: o_i = 0; a NaN score or value stays NaN (std::isnan: l > 0 is false).
    const float inv = std::isnan(l[i]) ? NAN : l[i] > 0 ? float(1.0 / l[i]) : 0.0f;
    for (int64_t d = 0; d < D; ++d) o[d] = acc[i * D + d] * inv;
    io.lse_out[row] = l[i] > 0 ? float(double(m[i]) + std::log(l[i])) : kNegInf;
  }
}

// ---- backward ------------------------------------------------------------------------------

// dq for query rows [i0, i0 + nq) of (b, h): dq_i += scale · Σ_j ds_ij k_j.
template <int VW>
PEFT_INLINE void backward_dq_tile(const Problem& p, const Buffers& io, const Tile& t, Scratch& w) {
  const int64_t b = t.b, h = t.head, i0 = t.start, nq = t.len;
  const int64_t D = p.D, bk = p.bk, hk = h / p.group, ld = p.ld_kv(), ldq = p.ld_q();
  const int64_t row0 = (b * p.Tq + i0) * p.H + h;  // (b, i0, h); query i is row0 + i·H
  const float* dout = io.dout + row0 * D;          // [nq, D], row stride H·D
  float* qs = w.qs.data();                         // [nq, D]
  float* acc = w.acc.data();                       // [nq, D] Σ_j ds_ij k_j
  float* s = w.s.data();                           // [nq, bk] scores, then p_ij
  float* dp = w.ds.data();                         // [nq, bk] dO_i · v_j, then ds_ij
  load_scaled_queries(p, b, h, i0, nq, qs);
  std::fill(acc, acc + nq * D, 0.0f);

  for (const bool prefix : {true, false}) {
    const int64_t nkeys = prefix ? p.P : visible_keys(p, i0, nq);
    for (int64_t j0 = 0; j0 < nkeys; j0 += bk) {
      const int64_t n = std::min(bk, nkeys - j0);
      const auto [kt, ldt] = io.keys_t->block(p, false, prefix, b, hk, j0);  // [D, n]
      const auto [vt, ldv] = io.keys_t->block(p, true, prefix, b, hk, j0);
      block_gemm<VW>(qs, D, kt, ldt, s, bk, nq, n, D, false);
      block_gemm<VW>(dout, ldq, vt, ldv, dp, bk, nq, n, D, false);  // dO_i · v_j
      const bool all_ok = key_flags(p, b, prefix, j0, n, w.ok.data(), w.kseg.data());
      for (int64_t i = 0; i < nq; ++i) {
        float *si = s + i * bk, *dpi = dp + i * bk;
        const float lse_i = io.lse[row0 + i * p.H], delta_i = io.delta[row0 + i * p.H];
        if (lse_i == kNegInf) {  // the query saw nothing: no gradient
          std::fill(dpi, dpi + n, 0.0f);
          continue;
        }
        const int64_t lim = (prefix || !p.causal) ? n : i0 + i + p.off - j0;
        if (!all_ok || (p.seg && !prefix) || lim < n - 1)
          mask_row(si, n, w.ok.data(), w.kseg.data(), prefix ? 0 : query_segment(p, b, i0 + i),
                   lim);
        for (int64_t j = 0; j < n; ++j) dpi[j] = exp_fast(si[j] - lse_i) * (dpi[j] - delta_i);
      }
      const float* kb = p.key_row(p.k, p.pk, prefix, b, hk, j0);
      block_gemm<VW>(dp, bk, kb, ld, acc, D, nq, D, n, true);  // acc_i += Σ_j ds_ij k_j
    }
  }
  for (int64_t i = 0; i < nq; ++i) {
    float* g = io.dq + (row0 + i * p.H) * D;
    for (int64_t d = 0; d < D; ++d) g[d] += p.scale * acc[i * D + d];
  }
}

// dk, dv for keys [j0, j0 + n) of kv head hk: the sequence's keys of batch t.b, or the prefix
// slots of prefix batch t.b (every batch reads a shared prefix). Every query head of the group
// and every query that can see the block contributes:
//   dv_j += Σ_i p_ij dO_i,   dk_j += Σ_i ds_ij (scale · q_i).
// Works on transposed blocks (rows are keys): st = p_ijᵀ, dst = ds_ijᵀ, [n, nq].
template <int VW>
PEFT_INLINE void backward_dkv_tile(const Problem& p, const Buffers& io, const Tile& t, Scratch& w) {
  const bool prefix = t.prefix;
  const int64_t bs = t.b, hk = t.head, j0 = t.start, n = t.len;
  const int64_t D = p.D, bq = p.bq, ld = p.ld_kv(), ldq = p.ld_q();
  float* qs = w.qs.data();          // [nq, D] scaled queries
  float* dk_acc = w.acc.data();     // [n, D]
  float* dv_acc = w.acc2.data();    // [n, D]
  float* st = w.s.data();           // [n, bq] s_ijᵀ, then p_ijᵀ
  float* dst = w.ds.data();         // [n, bq] (dO_i · v_j)ᵀ, then ds_ijᵀ
  float* lse_i = w.lse.data();      // [nq] (+inf for queries that saw nothing: p = 0)
  float* delta_i = w.delta.data();  // [nq]
  int32_t* qseg = w.qseg.data();
  const float* kb = p.key_row(p.k, p.pk, prefix, bs, hk, j0);
  const float* vb = p.key_row(p.v, p.pv, prefix, bs, hk, j0);
  std::fill(dk_acc, dk_acc + n * D, 0.0f);
  std::fill(dv_acc, dv_acc + n * D, 0.0f);

  const bool shared = prefix && p.Bp == 1;
  for (int64_t b = shared ? 0 : bs; b < (shared ? p.B : bs + 1); ++b) {
    key_flags(p, b, prefix, j0, n, w.ok.data(), w.kseg.data());
    // Causal: the first query that sees key j0 is i = j0 − off.
    const int64_t first_q = (prefix || !p.causal) ? 0 : std::max<int64_t>(0, j0 - p.off);
    for (int64_t h = hk * p.group; h < (hk + 1) * p.group; ++h) {
      for (int64_t i0 = first_q / bq * bq; i0 < p.Tq; i0 += bq) {
        const int64_t nq = std::min(bq, p.Tq - i0);
        const int64_t row0 = (b * p.Tq + i0) * p.H + h;
        const float* dout = io.dout + row0 * D;                   // [nq, D], stride H·D
        const float* qt = io.qt + (b * p.H + h) * D * p.Tq + i0;  // [D, nq], stride Tq
        const float* dot = io.dout_t + (b * p.H + h) * D * p.Tq + i0;
        load_scaled_queries(p, b, h, i0, nq, qs);
        for (int64_t i = 0; i < nq; ++i) {
          const float lse = io.lse[row0 + i * p.H];
          lse_i[i] = lse == kNegInf ? kPosInf : lse;
          delta_i[i] = io.delta[row0 + i * p.H];
          qseg[i] = prefix ? 0 : query_segment(p, b, i0 + i);
        }
        block_gemm<VW>(kb, ld, qt, p.Tq, st, bq, n, nq, D, false);    // s_ij = k_j · scale q_i
        block_gemm<VW>(vb, ld, dot, p.Tq, dst, bq, n, nq, D, false);  // dO_i · v_j
        for (int64_t j = 0; j < n; ++j) {
          float *sj = st + j * bq, *dsj = dst + j * bq;
          // Causal: query i sees key j0 + j when i0 + i + off ≥ j0 + j.
          const int64_t i_first = (prefix || !p.causal) ? 0 : j0 + j - p.off - i0;
          const int32_t first32 = int32_t(std::clamp<int64_t>(i_first, 0, nq)), nq32 = int32_t(nq),
                        seg_j = w.kseg[size_t(j)];
          const bool ok = w.ok[size_t(j)] != 0;
          for (int32_t i = 0; i < nq32; ++i) {
            const bool seen = ok && i >= first32 && qseg[i] == seg_j;
            sj[i] = seen ? exp_fast(sj[i] - lse_i[i]) : 0.0f;  // p_ij
            dsj[i] = sj[i] * (dsj[i] - delta_i[i]);            // ds_ij
          }
        }
        block_gemm<VW>(st, bq, dout, ldq, dv_acc, D, n, D, nq, true);  // dv_j += Σ_i p_ij dO_i
        block_gemm<VW>(dst, bq, qs, D, dk_acc, D, n, D, nq, true);     // dk_j += Σ_i ds_ij q_i
      }
    }
  }
  float* dk = prefix ? io.dpk : io.dk;
  float* dv = prefix ? io.dpv : io.dv;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t row = ((prefix ? bs * p.P : bs * p.Tk) + j0 + j) * p.Hkv + hk;
    if (dk)
      for (int64_t d = 0; d < D; ++d) dk[row * D + d] += dk_acc[j * D + d];
    if (dv)
      for (int64_t d = 0; d < D; ++d) dv[row * D + d] += dv_acc[j * D + d];
  }
}

// ---- one entry point per SIMD level --------------------------------------------------------

using TileFn = void (*)(const Problem&, const Buffers&, const Tile&, Scratch&);
struct TileFns {
  TileFn forward, dq, dkv;
};

// VW: floats per vector register at that level.
#define PEFT_TILE_VARIANTS(level, target, VW)                                                   \
  target void forward_##level(const Problem& p, const Buffers& io, const Tile& t, Scratch& w) { \
    forward_tile<VW>(p, io, t, w);                                                              \
  }                                                                                             \
  target void dq_##level(const Problem& p, const Buffers& io, const Tile& t, Scratch& w) {      \
    backward_dq_tile<VW>(p, io, t, w);                                                          \
  }                                                                                             \
  target void dkv_##level(const Problem& p, const Buffers& io, const Tile& t, Scratch& w) {     \
    backward_dkv_tile<VW>(p, io, t, w);                                                         \
  }

PEFT_TILE_VARIANTS(generic, , 4)
#if defined(__x86_64__)
PEFT_TILE_VARIANTS(avx2, __attribute__((target("avx2,fma,f16c"))), 8)
PEFT_TILE_VARIANTS(avx512,
                   __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c,"
                                         "prefer-vector-width=512"))),
                   16)
#endif

TileFns tile_fns() {
#if defined(__x86_64__)
  switch (simd_level()) {
    case SimdLevel::Avx512:
      return {forward_avx512, dq_avx512, dkv_avx512};
    case SimdLevel::Avx2:
      return {forward_avx2, dq_avx2, dkv_avx2};
    case SimdLevel::Generic:
      break;
  }
#endif
  return {forward_generic, dq_generic, dkv_generic};
}

#undef PEFT_TILE_VARIANTS
#undef PEFT_INLINE

float* data_or_null(AttentionTensors& g, Tensor AttentionTensors::*member) {
  Tensor& t = g.*member;
  return t.defined() ? t.data<float>() : nullptr;
}

}  // namespace

void attention_forward(const AttentionTensors& in, const AttentionOptions& opts, Tensor& out,
                       Tensor& lse) {
  const Problem p = make_problem(in, opts);
  PEFT_CHECK(out.shape() == in.q.shape() && lse.shape() == (Shape{p.B, p.Tq, p.H}),
             "attention: out {} / lse {} for q {}", out.describe(), lse.describe(),
             in.q.describe());
  const KeysT keys_t = transpose_keys(p, false);
  Buffers io;
  io.out = out.data<float>();
  io.lse_out = lse.data<float>();
  io.keys_t = &keys_t;
  const TileFn forward = tile_fns().forward;
  const int64_t nqb = blocks(p.Tq, p.bq), items = p.B * p.H * nqb;
#pragma omp parallel
  {
    Scratch w(p);
    // Later query blocks see more keys (causal): hand them out first.
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t qb = nqb - 1 - it / (p.B * p.H), bh = it % (p.B * p.H), i0 = qb * p.bq;
      forward(p, io, {bh / p.H, bh % p.H, i0, std::min(p.bq, p.Tq - i0), false}, w);
    }
  }
}

void attention_backward(const Tensor& dout, const AttentionTensors& in, const Tensor& out,
                        const Tensor& lse, const AttentionOptions& opts, AttentionTensors grads) {
  const Problem p = make_problem(in, opts);
  PEFT_CHECK(dout.shape() == in.q.shape() && out.shape() == in.q.shape() &&
                 lse.shape() == (Shape{p.B, p.Tq, p.H}),
             "attention: dout {} / out {} / lse {} for q {}", dout.describe(), out.describe(),
             lse.describe(), in.q.describe());
  const float* po = out.data<float>();
  const float* pg = dout.data<float>();
  const int64_t rows = p.B * p.Tq * p.H;
  std::vector<float> delta(static_cast<size_t>(rows));  // D_i = Σ_d dO_id · O_id
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    double acc = 0;
    for (int64_t d = 0; d < p.D; ++d) acc += double(pg[r * p.D + d]) * po[r * p.D + d];
    delta[size_t(r)] = float(acc);
  }
  Buffers io;
  io.dout = pg;
  io.lse = lse.data<float>();
  io.delta = delta.data();
  io.dq = data_or_null(grads, &AttentionTensors::q);
  io.dk = data_or_null(grads, &AttentionTensors::k);
  io.dv = data_or_null(grads, &AttentionTensors::v);
  io.dpk = data_or_null(grads, &AttentionTensors::prefix_k);
  io.dpv = data_or_null(grads, &AttentionTensors::prefix_v);
  const TileFns fns = tile_fns();
  KeysT keys_t;
  std::vector<float> qt, dout_t;
  if (io.dq) keys_t = transpose_keys(p, true);
  if (io.dk || io.dv || io.dpk || io.dpv) {
    qt = transpose_heads(p.q, p.B, p.Tq, p.H, p.D, p.scale);
    dout_t = transpose_heads(pg, p.B, p.Tq, p.H, p.D, 1.0f);
  }
  io.keys_t = &keys_t;
  io.qt = qt.data();
  io.dout_t = dout_t.data();

  // Pass 1, dq: tiles of query rows, like the forward.
  const int64_t nqb = blocks(p.Tq, p.bq), q_items = io.dq ? p.B * p.H * nqb : 0;
  // Pass 2, dk / dv: tiles of prefix slots and of the sequence's keys, where wanted.
  const int64_t nkb = blocks(p.Tk, p.bk), npb = blocks(p.P, p.bk);
  const int64_t seq_items = (io.dk || io.dv) ? p.B * p.Hkv * nkb : 0;
  const int64_t prefix_items = (io.dpk || io.dpv) ? p.Bp * p.Hkv * npb : 0;
#pragma omp parallel
  {
    Scratch w(p);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < q_items; ++it) {
      const int64_t qb = nqb - 1 - it / (p.B * p.H), bh = it % (p.B * p.H), i0 = qb * p.bq;
      fns.dq(p, io, {bh / p.H, bh % p.H, i0, std::min(p.bq, p.Tq - i0), false}, w);
    }
    // Heavy tiles first: prefix slots (seen by every query), then early key blocks (seen by
    // more queries than late ones when causal).
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < prefix_items + seq_items; ++it) {
      const bool prefix = it < prefix_items;
      const int64_t local = prefix ? it : it - prefix_items, len = prefix ? p.P : p.Tk;
      const int64_t heads = (prefix ? p.Bp : p.B) * p.Hkv;
      const int64_t kb = local / heads, bh = local % heads, j0 = kb * p.bk;
      fns.dkv(p, io, {bh / p.Hkv, bh % p.Hkv, j0, std::min(p.bk, len - j0), prefix}, w);
    }
  }
}

// ---- naive reference -----------------------------------------------------------------------

void attention_naive_forward(const AttentionTensors& in, const AttentionOptions& opts, Tensor& out,
                             Tensor& probs) {
  const Problem p = make_problem(in, opts);
  const int64_t L = p.P + p.Tk, D = p.D;
  PEFT_CHECK(out.shape() == in.q.shape() && probs.shape() == (Shape{p.B, p.H, p.Tq, L}),
             "attention: out {} / probs {} for q {}", out.describe(), probs.describe(),
             in.q.describe());
  float* po = out.data<float>();
  std::vector<int32_t> ok(static_cast<size_t>(L)), kseg(static_cast<size_t>(L));
  for (int64_t b = 0; b < p.B; ++b) {
    if (p.P) key_flags(p, b, true, 0, p.P, ok.data(), kseg.data());
    key_flags(p, b, false, 0, p.Tk, ok.data() + p.P, kseg.data() + p.P);
    for (int64_t h = 0; h < p.H; ++h) {
      const int64_t hk = h / p.group;
      const float* qbh = p.q + (b * p.Tq * p.H + h) * D;
      float* s = probs.data<float>() + (b * p.H + h) * p.Tq * L;
      if (p.P)
        gemm_f32(false, true, p.Tq, p.P, D, p.scale, qbh, p.ld_q(),
                 p.key_row(p.k, p.pk, true, b, hk, 0), p.ld_kv(), 0.0f, s, L);
      gemm_f32(false, true, p.Tq, p.Tk, D, p.scale, qbh, p.ld_q(),
               p.key_row(p.k, p.pk, false, b, hk, 0), p.ld_kv(), 0.0f, s + p.P, L);
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < p.Tq; ++i) {
        float* row = s + i * L;
        for (int64_t j = 0; j < L; ++j) {
          const bool prefix = j < p.P;
          const bool visible = ok[size_t(j)] &&
                               (prefix || kseg[size_t(j)] == query_segment(p, b, i)) &&
                               (prefix || !p.causal || j - p.P <= i + p.off);
          if (!visible) row[j] = kNegInf;
        }
        const float m = row_max(row, L);
        if (m == kNegInf) {
          const bool nan = std::any_of(row, row + L, [](float x) { return std::isnan(x); });
          std::fill(row, row + L, nan ? NAN : 0.0f);
          continue;
        }
        const float inv = float(1.0 / exp_shifted_sum(row, L, m, row));
        for (int64_t j = 0; j < L; ++j) row[j] *= inv;
      }
      float* obh = po + (b * p.Tq * p.H + h) * D;
      if (p.P)
        gemm_f32(false, false, p.Tq, D, p.P, 1.0f, s, L, p.key_row(p.v, p.pv, true, b, hk, 0),
                 p.ld_kv(), 0.0f, obh, p.ld_q());
      gemm_f32(false, false, p.Tq, D, p.Tk, 1.0f, s + p.P, L, p.key_row(p.v, p.pv, false, b, hk, 0),
               p.ld_kv(), p.P ? 1.0f : 0.0f, obh, p.ld_q());
    }
  }
}

void attention_naive_backward(const Tensor& dout, const AttentionTensors& in, const Tensor& probs,
                              const AttentionOptions& opts, AttentionTensors grads) {
  const Problem p = make_problem(in, opts);
  const int64_t L = p.P + p.Tk, D = p.D, ldq = p.ld_q(), ldkv = p.ld_kv();
  float* dq = data_or_null(grads, &AttentionTensors::q);
  float* dk = data_or_null(grads, &AttentionTensors::k);
  float* dv = data_or_null(grads, &AttentionTensors::v);
  float* dpk = data_or_null(grads, &AttentionTensors::prefix_k);
  float* dpv = data_or_null(grads, &AttentionTensors::prefix_v);
  // Row j of a key-shaped gradient (prefix or sequence) for batch b, kv head hk.
  auto grad_row = [&](float* g, bool prefix, int64_t b, int64_t hk) {
    return prefix ? g + (((p.Bp == 1 ? 0 : b) * p.P) * p.Hkv + hk) * D
                  : g + ((b * p.Tk) * p.Hkv + hk) * D;
  };
  std::vector<float> ds(static_cast<size_t>(p.Tq * L));  // dP, then dS, of one head
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t h = 0; h < p.H; ++h) {
      const int64_t hk = h / p.group;
      const float* qbh = p.q + (b * p.Tq * p.H + h) * D;
      const float* gbh = dout.data<float>() + (b * p.Tq * p.H + h) * D;
      const float* pr = probs.data<float>() + (b * p.H + h) * p.Tq * L;
      const float* pkb = p.P ? p.key_row(p.k, p.pk, true, b, hk, 0) : nullptr;
      const float* pvb = p.P ? p.key_row(p.v, p.pv, true, b, hk, 0) : nullptr;
      const float* kb = p.key_row(p.k, p.pk, false, b, hk, 0);
      const float* vb = p.key_row(p.v, p.pv, false, b, hk, 0);
      // dP = dO · [pv; v]ᵀ, then dS = P ∘ (dP − rowsum(P ∘ dP)).
      if (p.P) gemm_f32(false, true, p.Tq, p.P, D, 1.0f, gbh, ldq, pvb, ldkv, 0.0f, ds.data(), L);
      gemm_f32(false, true, p.Tq, p.Tk, D, 1.0f, gbh, ldq, vb, ldkv, 0.0f, ds.data() + p.P, L);
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < p.Tq; ++i) {
        float* d = ds.data() + i * L;
        const float* pi = pr + i * L;
        double dot = 0;
        for (int64_t j = 0; j < L; ++j) dot += double(pi[j]) * d[j];
        for (int64_t j = 0; j < L; ++j) d[j] = pi[j] * (d[j] - float(dot));
      }
      if (dq) {
        float* dqbh = dq + (b * p.Tq * p.H + h) * D;
        if (p.P)
          gemm_f32(false, false, p.Tq, D, p.P, p.scale, ds.data(), L, pkb, ldkv, 1.0f, dqbh, ldq);
        gemm_f32(false, false, p.Tq, D, p.Tk, p.scale, ds.data() + p.P, L, kb, ldkv, 1.0f, dqbh,
                 ldq);
      }
      if (dk)
        gemm_f32(true, false, p.Tk, D, p.Tq, p.scale, ds.data() + p.P, L, qbh, ldq, 1.0f,
                 grad_row(dk, false, b, hk), ldkv);
      if (dv)
        gemm_f32(true, false, p.Tk, D, p.Tq, 1.0f, pr + p.P, L, gbh, ldq, 1.0f,
                 grad_row(dv, false, b, hk), ldkv);
      if (dpk && p.P)
        gemm_f32(true, false, p.P, D, p.Tq, p.scale, ds.data(), L, qbh, ldq, 1.0f,
                 grad_row(dpk, true, b, hk), ldkv);
      if (dpv && p.P)
        gemm_f32(true, false, p.P, D, p.Tq, 1.0f, pr, L, gbh, ldq, 1.0f, grad_row(dpv, true, b, hk),
                 ldkv);
    }
  }
}

// ---- autograd ------------------------------------------------------------------------------

Var attention(const Var& q, const Var& k, const Var& v, const AttentionOptions& opts,
              const Var& prefix_k, const Var& prefix_v) {
  PEFT_CHECK(!prefix_k == !prefix_v, "attention: prefix keys and values come together");
  AttentionTensors in{q->value, k->value, v->value, prefix_k ? prefix_k->value : Tensor(),
                      prefix_v ? prefix_v->value : Tensor()};
  Tensor out = Tensor::zeros(q->value.shape());
  Tensor lse = Tensor::zeros({q->value.dim(0), q->value.dim(1), q->value.dim(2)});
  attention_forward(in, opts, out, lse);
  const bool grad = needs_grad({&q, &k, &v, &prefix_k, &prefix_v});
  Var result = make_output(out, grad);
  if (!grad) return result;
  active_tape()->record([result, q, k, v, prefix_k, prefix_v, in, opts, out, lse]() {
    if (!result->grad.defined()) return;
    auto want = [](const Var& x) { return x && x->requires_grad ? x->grad_buffer() : Tensor(); };
    attention_backward(result->grad, in, out, lse, opts,
                       {want(q), want(k), want(v), want(prefix_k), want(prefix_v)});
  });
  return result;
}

}  // namespace peft
