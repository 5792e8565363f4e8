#include <omp.h>

#include <cstring>
#include <dnnl.hpp>
#include <mutex>
#include <unordered_map>

#include "core/error.h"
#include "kernels/gemm_backends.h"

namespace peft::gemm_detail {
namespace {

using dnnl::memory;

// Everything a matmul primitive is specialised on. oneDNN fixes the thread count when it creates
// a primitive, so the count is part of the key.
struct Key {
  int64_t M, N, K, lda, ldb, ldc;
  float alpha, beta;
  int threads;
  bool bf16, trans_a, trans_b;
  bool operator==(const Key&) const = default;
};

struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    for (int64_t v : {k.M, k.N, k.K, k.lda, k.ldb, k.ldc}) mix(uint64_t(v));
    uint32_t a, b;
    std::memcpy(&a, &k.alpha, 4);
    std::memcpy(&b, &k.beta, 4);
    mix(a);
    mix(b);
    mix(uint64_t(k.threads) << 3 | uint64_t(k.bf16) << 2 | uint64_t(k.trans_a) << 1 |
        uint64_t(k.trans_b));
    return h;
  }
};

struct Entry {
  dnnl::matmul primitive;
  memory::desc a, b, c;
};

// Primitives live for the process; a model has a few dozen distinct shapes. Past this many (e.g.
// token counts varying every step) the cache starts over rather than growing without bound.
constexpr size_t kMaxCachedPrimitives = 1024;
// Products below this many FLOPs run on one thread: a fork/join costs more than it saves there,
// and far more when the machine is oversubscribed.
constexpr double kSerialMaxFlops = 4e6;
// f32 x·Wᵀ with fewer rows than this goes to dnnl_sgemm (twice as fast for a single row).
constexpr int64_t kMatmulMinRows = 8;

// Runs the enclosed oneDNN calls on one OpenMP thread (oneDNN reads the calling thread's
// omp_get_max_threads() when it creates and runs a primitive).
class OneThreadScope {
 public:
  explicit OneThreadScope(bool active) : saved_(active ? omp_get_max_threads() : 0) {
    if (saved_ > 1) omp_set_num_threads(1);
  }
  ~OneThreadScope() {
    if (saved_ > 1) omp_set_num_threads(saved_);
  }
  OneThreadScope(const OneThreadScope&) = delete;
  OneThreadScope& operator=(const OneThreadScope&) = delete;

 private:
  int saved_;
};

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

std::mutex g_cache_mutex;
std::unordered_map<Key, Entry, KeyHash> g_cache;

Entry create(const Key& k) {
  const memory::data_type ab = k.bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  // Transposes and leading dimensions are expressed as strides of plain 2-d descriptors.
  memory::desc a({k.M, k.K}, ab, k.trans_a ? memory::dims{1, k.lda} : memory::dims{k.lda, 1});
  memory::desc b({k.K, k.N}, ab, k.trans_b ? memory::dims{1, k.ldb} : memory::dims{k.ldb, 1});
  memory::desc c({k.M, k.N}, memory::data_type::f32, memory::dims{k.ldc, 1});
  dnnl::primitive_attr attr;
  if (k.alpha != 1.0f) attr.set_output_scales(0, {k.alpha});
  if (k.beta != 0.0f) {  // C = alpha · AB + beta · C via the sum post-op
    dnnl::post_ops ops;
    ops.append_sum(k.beta);
    attr.set_post_ops(ops);
  }
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, engine());
  return Entry{dnnl::matmul(pd), a, b, c};
}

// A copy of the cached entry (dnnl handles are reference counted, so it stays valid if the cache
// is cleared meanwhile).
Entry lookup(const Key& k) {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  auto it = g_cache.find(k);
  if (it != g_cache.end()) return it->second;
  if (g_cache.size() >= kMaxCachedPrimitives) g_cache.clear();
  try {
    return g_cache.emplace(k, create(k)).first->second;
  } catch (const dnnl::error& e) {
    check_failed(__FILE__, __LINE__, "oneDNN matmul primitive",
                 fmt::format("{} {}x{}x{} (trans {}{}): {}", k.bf16 ? "bf16" : "f32", k.M, k.N, k.K,
                             int(k.trans_a), int(k.trans_b), e.what()));
  }
}

// C = alpha · op(A) · op(B) + beta · C by a cached matmul primitive; A and B f32 or bf16.
void run_matmul(bool bf16, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const void* A, int64_t lda, const void* B, int64_t ldb, float beta, float* C,
                int64_t ldc) {
  // Inside a parallel region (the panel path's column split) the primitive runs on the calling
  // thread alone: create it for one thread too.
  const bool serial = 2.0 * double(M) * double(N) * double(K) < kSerialMaxFlops;
  OneThreadScope one_thread(serial || omp_in_parallel());
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const Key key{M, N, K, lda, ldb, ldc, alpha, beta, threads, bf16, trans_a, trans_b};
  const Entry entry = lookup(key);
  thread_local dnnl::stream stream(engine());
  memory a(entry.a, engine(), const_cast<void*>(A));
  memory b(entry.b, engine(), const_cast<void*>(B));
  memory c(entry.c, engine(), C);
  entry.primitive.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
  stream.wait();
}

}  // namespace

// Two oneDNN f32 paths, by measurement (bench/gemm.cpp and the notes in the issue): the matmul
// primitive (BRGEMM) is 5-20% faster for the linear layer's forward y = x·Wᵀ once x has a few
// rows, while dnnl_sgemm (oneDNN's JIT GEMM, no primitive to create) is up to 2.5x faster for
// the other transposes, e.g. dy·W and dyᵀ·x with 3584-wide rows, and for single rows.
void onednn_gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                     int64_t ldc) {
  if (!trans_a && trans_b && M >= kMatmulMinRows &&
      2.0 * double(M) * double(N) * double(K) >= kSerialMaxFlops)
    return run_matmul(false, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  const dnnl_status_t status = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha,
                                          A, lda, B, ldb, beta, C, ldc);
  PEFT_CHECK(status == dnnl_success, "dnnl_sgemm {}x{}x{} failed with status {}", M, N, K,
             int(status));
}

void onednn_gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                      float* C, int64_t ldc) {
  run_matmul(true, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

bool onednn_has_native_bf16() {
  // cpu_isa values are bit sets: an ISA includes avx512_core_bf16 when it has all of its bits.
  const unsigned want = unsigned(dnnl::cpu_isa::avx512_core_bf16);
  return (unsigned(dnnl::get_effective_cpu_isa()) & want) == want;
}

std::string onednn_version() {
  const dnnl_version_t* v = dnnl::version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

std::string onednn_isa_name() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::all:
      return "all";
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_mic:
      return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops:
      return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
  }
  return "unknown";
}

size_t onednn_cached_primitives() {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  return g_cache.size();
}

}  // namespace peft::gemm_detail
