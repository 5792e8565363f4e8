// Every numeric tolerance the tests use, in one place (STYLE.md, testing pyramid).
#pragma once

namespace peft::tol {

// Op forward (f32) against a naive f64 reference: |ours − ref| ≤ kForwardAbs + kForwardRel·|ref|.
constexpr double kForwardAbs = 1e-6;
constexpr double kForwardRel = 1e-5;
// Ops whose f32 forward sums many terms (GEMM, attention, norms over wide rows) accumulate more
// rounding: ≤ kReductionAbs + kReductionRel·|ref|.
constexpr double kReductionAbs = 1e-5;
constexpr double kReductionRel = 1e-4;
// Op backward: our f32 vector-Jacobian product against f64 central differences of the f64
// reference forward, as max|ours − fd| ≤ kBackwardRel · max(1, max|fd|).
constexpr double kBackwardRel = 1e-4;
// Central-difference step in f64.
constexpr double kFiniteDifferenceStep = 1e-6;
// A wrong backward (e.g. a dropped term) is off by far more than this; the mutation checks in
// the op tests assert that a deliberately broken gradient exceeds kBackwardRel by this factor.
constexpr double kMutationFactor = 10.0;
// Quantisation round trip: max error per element as a fraction of the block's max |x|.
constexpr double kQ8RoundTrip = 0.5 / 127 + 1e-3;  // half a step, plus the f16 scale's rounding
// q4_0 spans [−8d, 7d] with −8d at the extreme value: the opposite end clamps, up to one step.
constexpr double kQ4RoundTrip = 1.0 / 8 + 1e-3;
// Layer / model outputs against PyTorch (tests/python). tests/python/test_ops_torch.py mirrors it
// as TOL: every op's output and gradients within |ours − torch| ≤ TOL + TOL·|torch|.
constexpr double kLayerVsTorch = 1e-4;

// bf16 GEMM (oneDNN's native path) against the f64 product of the bf16-rounded operands: a
// product of two bf16 values is exact in f32, so only the f32 accumulation differs and the f32
// reduction bounds apply (named apart because VDPBF16PS also flushes denormals to zero).
constexpr double kBf16GemmAbs = 1e-5;
constexpr double kBf16GemmRel = 1e-4;

// Two f32 computations of the same quantity that differ only in summation order or grouping
// (tiles, chunks, GQA head groups, packed vs separate sequences).
constexpr double kReorderAbs = 1e-6;
constexpr double kReorderRel = 1e-5;
// A product whose f32 input is rounded to bf16 on the way in (oneDNN's native bf16 path rounds
// the activations, 2^-9 relative), against the same product in f32.
constexpr double kBf16InputRoundingRel = 2e-2;
// exp_fast (ops/softmax.h) against the exact exponential: 2.5 ulp of f32.
constexpr double kExpFastRel = 2.5 * 1.1920929e-7;

}  // namespace peft::tol
