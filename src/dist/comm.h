// Data-parallel communication between the ranks of one training run, over MPI (OpenMPI) when the
// build found it and the process was started by mpirun / mpiexec; otherwise a single rank and
// every operation is the identity. Only the calls data-parallel training needs: sums of
// gradients, losses and token counts; broadcasting a ZeRO-1 parameter shard from its owner;
// gathering optimizer-state shards to rank 0 for a checkpoint.
//
// Every operation is collective: every rank calls it in the same order with the same sizes.
// A failed MPI call throws peft::Error; the program then calls abort_all() so no rank waits
// forever for one that has stopped (cli/main.cpp).
#pragma once

#include <cstdint>
#include <string>

namespace peft::dist {

// The MPI library compiled in ("Open MPI v4.1.4, ..."), or "" when built without MPI.
std::string mpi_library();
// True when started by an MPI launcher (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK is set).
bool launched_by_mpi();
// MPI_Init when launched by mpirun and built with MPI (Error when launched by mpirun but built
// without: the ranks would silently train alone); otherwise nothing. Idempotent.
void init();
// MPI_Finalize if init() started MPI.
void finalize();
// After an error on this rank: stops every rank of the job (MPI_Abort) when more than one runs.
void abort_all(int code);

int rank();
int size();
// Ranks on this machine (for the default thread count: cores / local ranks).
int local_size();
inline bool is_root() {
  return rank() == 0;
}

void allreduce_sum(float* data, int64_t n);
void allreduce_sum(double* data, int64_t n);
// The sum carried in bf16 (each partial sum rounded to bf16), half the bytes of f32; the result
// is written back as f32. For full fine-tuning over slow networks.
void allreduce_sum_bf16(float* data, int64_t n);

// Non-blocking sums, for gradient buckets summed while backward still runs: start_allreduce_sum
// begins summing data[0, n) over the ranks (carried in bf16 when `bf16`, as allreduce_sum_bf16);
// data[0, n) must not be read or written until wait_all() returns. Every rank starts the same
// sums in the same order (collective), at any time before wait_all.
void start_allreduce_sum(float* data, int64_t n, bool bf16);
// Lets the started sums advance: OpenMPI moves a non-blocking collective only inside MPI calls,
// so the caller calls this between pieces of work (cheap: one MPI_Testall).
void progress();
// Waits for every started sum; data then holds the sums.
void wait_all();
// Element-wise min and max over the ranks (used to check that replicas agree).
void allreduce_min_max(uint64_t* min_io, uint64_t* max_io);
// Every rank's data[0, n) becomes rank `root`'s.
void broadcast(float* data, int64_t n, int root);
// Rank `from` sends data[0, n) to rank 0, which receives it into data[0, n); others do nothing.
void send_to_root(float* data, int64_t n, int from);
void barrier();

}  // namespace peft::dist
