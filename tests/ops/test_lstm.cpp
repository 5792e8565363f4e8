#include <gtest/gtest.h>

#include <cmath>

#include "op_check.h"
#include "ops/lstm.h"

namespace peft {
namespace {
using testing::OpInput;
using testing::Vec;
using testing::Vecs;

struct LstmCase {
  int64_t B, T, in, H;
  int layers;
  bool bidirectional, bias;
};

void PrintTo(const LstmCase& c, std::ostream* os) {
  *os << "B " << c.B << " T " << c.T << " in " << c.in << " H " << c.H << " layers " << c.layers
      << (c.bidirectional ? " bidirectional" : "") << (c.bias ? "" : " no bias");
}

int directions(const LstmCase& c) {
  return c.bidirectional ? 2 : 1;
}

// x [B, T, in], then per layer k and direction d: w_ih [4H, in_k], w_hh [4H, H], (b_ih, b_hh [4H]).
std::vector<OpInput> lstm_inputs(const LstmCase& c, bool trainable_x, bool trainable_w) {
  std::vector<OpInput> in{{{c.B, c.T, c.in}, trainable_x}};
  const double s = 1.0 / std::sqrt(double(c.H)) + 0.2;  // a little wider than torch's init
  for (int k = 0; k < c.layers; ++k)
    for (int d = 0; d < directions(c); ++d) {
      const int64_t in_k = k == 0 ? c.in : directions(c) * c.H;
      in.push_back({{4 * c.H, in_k}, trainable_w, s});
      in.push_back({{4 * c.H, c.H}, trainable_w, s});
      if (c.bias) {
        in.push_back({{4 * c.H}, trainable_w, s});
        in.push_back({{4 * c.H}, trainable_w, s});
      }
    }
  return in;
}

LstmParams lstm_params(const LstmCase& c, const std::vector<Var>& v) {
  LstmParams p;
  p.num_layers = c.layers;
  p.bidirectional = c.bidirectional;
  for (size_t at = 1; at < v.size();) {
    LstmWeights w{v[at], v[at + 1], nullptr, nullptr};
    at += 2;
    if (c.bias) w.b_ih = v[at], w.b_hh = v[at + 1], at += 2;
    p.weights.push_back(w);
  }
  return p;
}

double sigmoid_ref(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

// torch.nn.LSTM(batch_first=True) in f64, zero initial states, gates i, f, g, o.
Vec lstm_ref(const Vecs& v, const LstmCase& c) {
  const int64_t B = c.B, T = c.T, H = c.H, D = directions(c);
  Vec x = v[0];
  int64_t in = c.in;
  size_t at = 1;
  for (int k = 0; k < c.layers; ++k) {
    Vec out(size_t(B * T * D * H));
    for (int64_t d = 0; d < D; ++d) {
      const Vec& wih = v[at];
      const Vec& whh = v[at + 1];
      const Vec zeros(size_t(4 * H), 0.0);
      const Vec& bih = c.bias ? v[at + 2] : zeros;
      const Vec& bhh = c.bias ? v[at + 3] : zeros;
      at += c.bias ? 4 : 2;
      for (int64_t b = 0; b < B; ++b) {
        Vec h(size_t(H), 0.0), cell(size_t(H), 0.0), z(size_t(4 * H));
        for (int64_t step = 0; step < T; ++step) {
          const int64_t t = d == 1 ? T - 1 - step : step;
          const double* xt = x.data() + (b * T + t) * in;
          for (int64_t r = 0; r < 4 * H; ++r) {
            double acc = bih[size_t(r)] + bhh[size_t(r)];
            for (int64_t j = 0; j < in; ++j) acc += wih[size_t(r * in + j)] * xt[j];
            for (int64_t j = 0; j < H; ++j) acc += whh[size_t(r * H + j)] * h[size_t(j)];
            z[size_t(r)] = acc;
          }
          for (int64_t j = 0; j < H; ++j) {
            const double i = sigmoid_ref(z[size_t(j)]), f = sigmoid_ref(z[size_t(H + j)]);
            const double g = std::tanh(z[size_t(2 * H + j)]), o = sigmoid_ref(z[size_t(3 * H + j)]);
            cell[size_t(j)] = f * cell[size_t(j)] + i * g;
            h[size_t(j)] = o * std::tanh(cell[size_t(j)]);
            out[size_t((b * T + t) * D * H + d * H + j)] = h[size_t(j)];
          }
        }
      }
    }
    x = std::move(out);
    in = D * H;
  }
  return x;
}

void check_lstm(const LstmCase& c, bool trainable_x, bool trainable_w) {
  testing::check_op(
      lstm_inputs(c, trainable_x, trainable_w),
      [&](const std::vector<Var>& v) { return lstm(v[0], lstm_params(c, v)); },
      [&](const Vecs& v) { return lstm_ref(v, c); }, tol::kReductionAbs, tol::kReductionRel);
}

class LstmTest : public ::testing::TestWithParam<LstmCase> {};

TEST_P(LstmTest, ForwardMatchesF64Reference) {
  check_lstm(GetParam(), false, false);
}

TEST_P(LstmTest, GradientsMatchFiniteDifferences) {
  check_lstm(GetParam(), true, true);
}

TEST_P(LstmTest, FrozenWeightsGetNoGradientBuffers) {
  check_lstm(GetParam(), true, false);
}

TEST_P(LstmTest, FrozenInputGetsNoGradientBuffer) {
  check_lstm(GetParam(), false, true);
}

INSTANTIATE_TEST_SUITE_P(OddShapes, LstmTest,
                         ::testing::Values(LstmCase{1, 1, 1, 1, 1, false, true},
                                           LstmCase{1, 1, 2, 1, 2, true, true},
                                           LstmCase{3, 5, 7, 3, 1, true, false},
                                           LstmCase{2, 4, 5, 3, 2, false, true},
                                           LstmCase{2, 3, 3, 5, 2, true, true}));

// P-Tuning v1's prompt encoder: LSTM(C, H, num_layers=2, bidirectional=True, batch_first=True)
// over the virtual tokens (B = 1, T = P).
TEST(Lstm, BidirectionalGradientsMatchFiniteDifferences) {
  check_lstm({1, 7, 6, 4, 2, true, true}, true, true);
}

TEST(Lstm, ReverseDirectionIsForwardOnReversedSequence) {
  const int64_t B = 2, T = 5, in = 3, H = 4;
  Tensor x = testing::to_tensor(testing::random_vec(size_t(B * T * in), 1), {B, T, in});
  Tensor xr = Tensor::zeros({B, T, in});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < in; ++j)
        xr.data<float>()[(b * T + t) * in + j] = x.data<float>()[(b * T + (T - 1 - t)) * in + j];
  LstmWeights fwd{
      constant(testing::to_tensor(testing::random_vec(size_t(4 * H * in), 2), {4 * H, in})),
      constant(testing::to_tensor(testing::random_vec(size_t(4 * H * H), 3), {4 * H, H})),
      constant(testing::to_tensor(testing::random_vec(size_t(4 * H), 4), {4 * H})), nullptr};
  LstmWeights zero{constant(Tensor::zeros({4 * H, in})), constant(Tensor::zeros({4 * H, H})),
                   nullptr, nullptr};
  // Bidirectional with the real weights in the reverse slot, against forward-only on reversed x.
  const std::vector<float> both = lstm_layer(constant(x), {zero, fwd})->value.to_vector();
  const std::vector<float> once = lstm_layer(constant(xr), {fwd})->value.to_vector();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < H; ++j)
        EXPECT_FLOAT_EQ(both[size_t((b * T + t) * 2 * H + H + j)],
                        once[size_t((b * T + (T - 1 - t)) * H + j)]);
}

// f16, whose products run on f32 panels exactly; bf16 may take oneDNN's native path, which also
// rounds the activations (kernels/gemm.h) and is tested there.
TEST(Lstm, FrozenHalfWeightsMatchTheirF32Values) {
  const LstmCase c{2, 3, 5, 4, 2, true, true};
  std::vector<Var> v, v32;
  uint64_t seed = 1;
  for (const OpInput& in : lstm_inputs(c, false, false)) {
    Tensor t = testing::to_tensor(
        testing::random_vec(size_t(shape_numel(in.shape)), seed++, in.scale), in.shape);
    const bool weight = in.shape.size() == 2 && v.size() > 0;
    v.push_back(constant(weight ? t.to(DType::F16) : t));
    v32.push_back(constant(weight ? t.to(DType::F16).to(DType::F32) : t));
  }
  Var xv = variable(v[0]->value);
  v[0] = xv;
  Tape tape;
  Var y = lstm(v[0], lstm_params(c, v));
  Var y32 = lstm(v32[0], lstm_params(c, v32));
  EXPECT_TRUE(
      testing::all_close(testing::to_vec(y->value), testing::to_vec(y32->value), 1e-6, 1e-5));
  tape.backward(y, Tensor::zeros(y->value.shape()));
  EXPECT_TRUE(xv->grad.defined());
}

// The caller sets dropout only while training (the ForwardContext decides); the op applies what it
// is given, tape or not.
TEST(Lstm, InterLayerDropoutAppliedWhenAsked) {
  const LstmCase c{2, 3, 4, 3, 2, true, true};
  std::vector<Var> v;
  uint64_t seed = 1;
  for (const OpInput& in : lstm_inputs(c, false, true))
    v.push_back(variable(
        testing::to_tensor(testing::random_vec(size_t(shape_numel(in.shape)), seed++), in.shape)));
  LstmParams p = lstm_params(c, v);
  const std::vector<float> plain = lstm(v[0], p)->value.to_vector();
  Rng rng(5);
  p.dropout = 0.5f;
  p.rng = &rng;
  EXPECT_NE(lstm(v[0], p)->value.to_vector(), plain);
  p.dropout = 0.0f;
  Tape tape;
  EXPECT_EQ(lstm(v[0], p)->value.to_vector(), plain);
}

TEST(Lstm, RejectsWeightsOfTheWrongShape) {
  LstmParams p;
  p.weights.push_back(
      {constant(Tensor::zeros({8, 3})), constant(Tensor::zeros({8, 3})), nullptr, nullptr});
  EXPECT_THROW(lstm(constant(Tensor::zeros({1, 2, 3})), p),
               Error);  // w_hh must be [4H, H] = [8, 2]
}

}  // namespace
}  // namespace peft
