#include "dist/comm.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

#ifdef PEFT_WITH_MPI
// The C API only (OpenMPI and MPICH would otherwise pull in the deprecated C++ bindings).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace peft::dist {
namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

#ifdef PEFT_WITH_MPI
bool g_started = false;
int g_rank = 0, g_size = 1;

// MPI counts are int: large buffers go in pieces.
constexpr int64_t kChunk = int64_t(1) << 28;

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fail("{} failed on rank {} of {}: {}", what, g_rank, g_size, std::string(text, size_t(len)));
}

template <typename T>
void allreduce(T* data, int64_t n, MPI_Datatype type, MPI_Op op, const char* what) {
  if (g_size <= 1) return;
  for (int64_t at = 0; at < n; at += kChunk)
    check(MPI_Allreduce(MPI_IN_PLACE, data + at, int(std::min(kChunk, n - at)), type, op,
                        MPI_COMM_WORLD),
          what);
}

// MPI_Op for bf16 sums: inout[i] = bf16(in[i] + inout[i]), added in f32.
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
}

// The non-blocking sums started and not yet waited for. A bf16 sum runs on its own copy, written
// back to the f32 data when it completes.
struct Pending {
  float* data = nullptr;
  int64_t n = 0;
  std::vector<uint16_t> bf16;  // empty for an f32 sum
};
std::vector<Pending> g_pending;
std::vector<MPI_Request> g_requests;
MPI_Op g_bf16_op = MPI_OP_NULL;  // created on first use, freed by finalize()
#endif

}  // namespace

std::string mpi_library() {
#ifdef PEFT_WITH_MPI
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(text, &len);
  std::string s(text, size_t(len));
  if (const size_t comma = s.find(','); comma != std::string::npos) s.resize(comma);
  return s;
#else
  return "";
#endif
}

bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
}

void init() {
#ifdef PEFT_WITH_MPI
  if (g_started || !launched_by_mpi()) return;
  int provided = 0;
  // Only the main thread calls MPI; OpenMP threads compute between the calls.
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  g_started = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
#else
  if (launched_by_mpi() && env_int("OMPI_COMM_WORLD_SIZE", env_int("PMI_SIZE", 1)) > 1)
    fail(
        "started by mpirun, but this peft was built without MPI: install libopenmpi-dev and "
        "rebuild (cmake finds MPI), or run one process");
#endif
}

void finalize() {
#ifdef PEFT_WITH_MPI
  if (!g_started) return;
  if (g_bf16_op != MPI_OP_NULL) MPI_Op_free(&g_bf16_op);
  MPI_Finalize();
  g_started = false;
  g_rank = 0;
  g_size = 1;
#endif
}

void abort_all(int code) {
#ifdef PEFT_WITH_MPI
  if (g_started && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  (void)code;
}

int rank() {
#ifdef PEFT_WITH_MPI
  return g_rank;
#else
  return 0;
#endif
}

int size() {
#ifdef PEFT_WITH_MPI
  return g_size;
#else
  return 1;
#endif
}

int local_size() {
  if (size() <= 1) return 1;
  return std::max(1, env_int("OMPI_COMM_WORLD_LOCAL_SIZE", env_int("MPI_LOCALNRANKS", 1)));
}

void allreduce_sum(float* data, int64_t n) {
#ifdef PEFT_WITH_MPI
  allreduce(data, n, MPI_FLOAT, MPI_SUM, "MPI_Allreduce (gradients)");
#else
  (void)data, (void)n;
#endif
}

void allreduce_sum(double* data, int64_t n) {
#ifdef PEFT_WITH_MPI
  allreduce(data, n, MPI_DOUBLE, MPI_SUM, "MPI_Allreduce (sums)");
#else
  (void)data, (void)n;
#endif
}

void allreduce_sum_bf16(float* data, int64_t n) {
#ifdef PEFT_WITH_MPI
  if (g_size <= 1) return;
  MPI_Op op;
  check(MPI_Op_create(bf16_sum, 1, &op), "MPI_Op_create");
  std::vector<uint16_t> buffer(size_t(std::min(kChunk, n)));
  for (int64_t at = 0; at < n; at += kChunk) {
    const int64_t count = std::min(kChunk, n - at);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; ++i) buffer[size_t(i)] = f32_to_bf16(data[at + i]);
    const int rc =
        MPI_Allreduce(MPI_IN_PLACE, buffer.data(), int(count), MPI_UINT16_T, op, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) MPI_Op_free(&op);
    check(rc, "MPI_Allreduce (bf16 gradients)");
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; ++i) data[at + i] = bf16_to_f32(buffer[size_t(i)]);
  }
  MPI_Op_free(&op);
#else
  (void)data, (void)n;
#endif
}

void start_allreduce_sum(float* data, int64_t n, bool bf16) {
#ifdef PEFT_WITH_MPI
  if (g_size <= 1 || n <= 0) return;
  Pending p{data, n, {}};
  void* buffer = data;
  MPI_Datatype type = MPI_FLOAT;
  MPI_Op op = MPI_SUM;
  if (bf16) {
    if (g_bf16_op == MPI_OP_NULL) check(MPI_Op_create(bf16_sum, 1, &g_bf16_op), "MPI_Op_create");
    p.bf16.resize(size_t(n));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) p.bf16[size_t(i)] = f32_to_bf16(data[i]);
    buffer = p.bf16.data();  // stays put when p moves into g_pending (a vector moves its buffer)
    type = MPI_UINT16_T;
    op = g_bf16_op;
  }
  const size_t element = bf16 ? sizeof(uint16_t) : sizeof(float);
  for (int64_t at = 0; at < n; at += kChunk) {
    MPI_Request request;
    check(MPI_Iallreduce(MPI_IN_PLACE, static_cast<char*>(buffer) + size_t(at) * element,
                         int(std::min(kChunk, n - at)), type, op, MPI_COMM_WORLD, &request),
          "MPI_Iallreduce (gradients)");
    g_requests.push_back(request);
  }
  g_pending.push_back(std::move(p));
#else
  (void)data, (void)n, (void)bf16;
#endif
}

void progress() {
#ifdef PEFT_WITH_MPI
  if (g_requests.empty()) return;
  int done = 0;
  check(MPI_Testall(int(g_requests.size()), g_requests.data(), &done, MPI_STATUSES_IGNORE),
        "MPI_Testall (gradients)");
#endif
}

void wait_all() {
#ifdef PEFT_WITH_MPI
  if (g_requests.empty()) return;
  check(MPI_Waitall(int(g_requests.size()), g_requests.data(), MPI_STATUSES_IGNORE),
        "MPI_Waitall (gradients)");
  g_requests.clear();
  for (const Pending& p : g_pending)
    if (!p.bf16.empty()) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < p.n; ++i) p.data[i] = bf16_to_f32(p.bf16[size_t(i)]);
    }
  g_pending.clear();
#endif
}

void allreduce_min_max(uint64_t* min_io, uint64_t* max_io) {
#ifdef PEFT_WITH_MPI
  allreduce(min_io, 1, MPI_UINT64_T, MPI_MIN, "MPI_Allreduce (min)");
  allreduce(max_io, 1, MPI_UINT64_T, MPI_MAX, "MPI_Allreduce (max)");
#else
  (void)min_io, (void)max_io;
#endif
}

void broadcast(float* data, int64_t n, int root) {
#ifdef PEFT_WITH_MPI
  if (g_size <= 1) return;
  for (int64_t at = 0; at < n; at += kChunk)
    check(MPI_Bcast(data + at, int(std::min(kChunk, n - at)), MPI_FLOAT, root, MPI_COMM_WORLD),
          "MPI_Bcast (parameter shard)");
#else
  (void)data, (void)n, (void)root;
#endif
}

void send_to_root(float* data, int64_t n, int from) {
#ifdef PEFT_WITH_MPI
  if (g_size <= 1 || from == 0 || (g_rank != 0 && g_rank != from)) return;
  for (int64_t at = 0; at < n; at += kChunk) {
    const int count = int(std::min(kChunk, n - at));
    if (g_rank == from)
      check(MPI_Send(data + at, count, MPI_FLOAT, 0, 0, MPI_COMM_WORLD),
            "MPI_Send (optimizer shard)");
    else
      check(MPI_Recv(data + at, count, MPI_FLOAT, from, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
            "MPI_Recv (optimizer shard)");
  }
#else
  (void)data, (void)n, (void)from;
#endif
}

void barrier() {
#ifdef PEFT_WITH_MPI
  if (g_size > 1) check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
}

}  // namespace peft::dist
