// op_oracle: runs one op of src/ops on inputs read from files and writes its output and input
// gradients, so that tests/python/test_ops_torch.py can compare them with PyTorch. Test-only.
//
// Usage: op_oracle CASE_DIR [CASE_DIR ...]
//
// Each CASE_DIR holds spec.json:
//   {"op": "rms_norm",
//    "attrs": {"eps": 1e-6},
//    "inputs": [{"name": "x", "shape": [2, 3], "dtype": "f32", "requires_grad": true}, ...]}
// and one file per input, NAME.bin: the values as raw little-endian f32 or i32 (dtype "i32"; i32
// inputs are ids, positions, masks and targets, never differentiated), row-major. When
// grad_output.bin (f32, the output's shape) is present, the op runs under a Tape and the
// vector-Jacobian product is taken from it. Written back into CASE_DIR:
//   output.bin          the op's output, f32
//   grad_NAME.bin       for every input with requires_grad, f32 (zeros when no gradient reached it)
//   result.json         {"output_shape": [...]}
// Ops and their inputs (optional ones may be left out) and attrs:
//   linear         x, weight, [bias], [lora_A, lora_B]     scale
//   embedding      weight, ids (i32)
//   rms_norm       x, weight                                eps
//   layer_norm     x, weight, [bias]                        eps
//   swiglu         gate, up
//   gelu           x                                        approximate: "none" | "tanh"
//   silu, relu, tanh, sigmoid, softmax   x
//   lstm           x, weight_ih_l{k}[_reverse], weight_hh_l{k}[_reverse],
//                  [bias_ih_l{k}[_reverse], bias_hh_l{k}[_reverse]]   num_layers, bidirectional
//   rope           x [B, T, H, D], positions (i32 [B, T])   theta
//   attention      q, k, v, [prefix_k, prefix_v], [key_mask (i32 [B, Tk])]   causal
//   cross_entropy  hidden, weight, targets (i32)            ignore_index
// Exit status 1 with a message on stderr for a malformed case.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>

#include "autograd/tape.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/cross_entropy.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/lstm.h"
#include "ops/norm.h"
#include "ops/rope.h"
#include "ops/softmax.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace peft {
namespace {

Tensor read_tensor(const fs::path& file, const Shape& shape, DType dtype) {
  Tensor t = Tensor::zeros(shape, dtype);
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("op_oracle: cannot open {}", file.string());
  in.read(static_cast<char*>(t.raw()), std::streamsize(t.nbytes()));
  if (!in || in.peek() != EOF)
    fail("op_oracle: {} does not hold exactly {} bytes for {}", file.string(), t.nbytes(),
         t.describe());
  return t;
}

void write_f32(const fs::path& file, const Tensor& t) {
  const std::vector<float> v = t.to_vector();
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  if (!out) fail("op_oracle: cannot write {}", file.string());
}

class Case {
 public:
  explicit Case(fs::path dir) : dir_(std::move(dir)) {
    std::ifstream in(dir_ / "spec.json");
    if (!in) fail("op_oracle: no spec.json in {}", dir_.string());
    spec_ = json::parse(in);
    for (const json& input : spec_.at("inputs")) {
      const std::string name = input.at("name");
      const Shape shape = input.at("shape").get<Shape>();
      const std::string dtype = input.value("dtype", "f32");
      Tensor t = read_tensor(dir_ / (name + ".bin"), shape, dtype_from_name(dtype));
      if (t.dtype() == DType::I32) {
        ints_[name] = t;
      } else {
        vars_[name] = input.value("requires_grad", false) ? variable(t, name) : constant(t, name);
        order_.push_back(name);
      }
    }
  }

  std::string op() const { return spec_.at("op"); }
  template <typename T>
  T attr(const std::string& key, T fallback) const {
    return spec_.value("attrs", json::object()).value(key, fallback);
  }
  const Var& var(const std::string& name) const {
    auto it = vars_.find(name);
    if (it == vars_.end()) fail("op_oracle: op {} needs input {}", op(), name);
    return it->second;
  }
  Var optional(const std::string& name) const {
    auto it = vars_.find(name);
    return it == vars_.end() ? nullptr : it->second;
  }
  const Tensor& ints(const std::string& name) const {
    auto it = ints_.find(name);
    if (it == ints_.end()) fail("op_oracle: op {} needs i32 input {}", op(), name);
    return it->second;
  }
  bool has_ints(const std::string& name) const { return ints_.count(name) > 0; }

  void run() {
    const bool backward = fs::exists(dir_ / "grad_output.bin");
    Tape tape;
    std::optional<NoGradGuard> no_grad;
    if (!backward) no_grad.emplace();
    const Var out = forward();
    write_f32(dir_ / "output.bin", out->value);
    std::ofstream(dir_ / "result.json") << json{{"output_shape", out->value.shape()}}.dump();
    if (!backward) return;
    const Tensor g = read_tensor(dir_ / "grad_output.bin", out->value.shape(), DType::F32);
    if (out->value.numel() == 1 && out->value.ndim() == 0)
      tape.backward(out, g.data<float>()[0]);
    else
      tape.backward(out, g);
    for (const std::string& name : order_) {
      const Var& v = vars_.at(name);
      if (!v->requires_grad) continue;
      write_f32(dir_ / ("grad_" + name + ".bin"),
                v->grad.defined() ? v->grad : Tensor::zeros(v->value.shape()));
    }
  }

 private:
  Var forward() const {
    const std::string name = op();
    if (name == "linear") {
      if (Var a = optional("lora_A")) {
        LoraBranch lora{a, var("lora_B"), attr("scale", 1.0f)};
        return linear(var("x"), var("weight"), optional("bias"), &lora);
      }
      return linear(var("x"), var("weight"), optional("bias"));
    }
    if (name == "embedding") return embedding(var("weight"), ints("ids"));
    if (name == "rms_norm") return rms_norm(var("x"), var("weight"), attr("eps", 1e-6f));
    if (name == "layer_norm")
      return layer_norm(var("x"), var("weight"), optional("bias"), attr("eps", 1e-5f));
    if (name == "swiglu") return swiglu(var("gate"), var("up"));
    if (name == "gelu") return gelu(var("x"), attr<std::string>("approximate", "none") == "tanh");
    if (name == "softmax") return softmax(var("x"));
    if (name == "silu" || name == "relu" || name == "tanh" || name == "sigmoid")
      return activation(var("x"), activation_from_name(name));
    if (name == "lstm") return run_lstm();
    if (name == "rope") return rope(var("x"), ints("positions"), attr("theta", 10000.0f));
    if (name == "attention") {
      AttentionOptions opts;
      opts.causal = attr("causal", true);
      if (has_ints("key_mask")) opts.key_mask = ints("key_mask");
      return attention(var("q"), var("k"), var("v"), opts, optional("prefix_k"),
                       optional("prefix_v"));
    }
    if (name == "cross_entropy") {
      CrossEntropyOptions opts;
      opts.ignore_index = attr("ignore_index", -100);
      return cross_entropy(var("hidden"), var("weight"), ints("targets"), opts);
    }
    fail("op_oracle: unknown op '{}'", name);
  }

  Var run_lstm() const {
    LstmParams p;
    p.num_layers = attr("num_layers", 1);
    p.bidirectional = attr("bidirectional", false);
    for (int k = 0; k < p.num_layers; ++k)
      for (int d = 0; d < (p.bidirectional ? 2 : 1); ++d) {
        const std::string suffix = "_l" + std::to_string(k) + (d ? "_reverse" : "");
        p.weights.push_back({var("weight_ih" + suffix), var("weight_hh" + suffix),
                             optional("bias_ih" + suffix), optional("bias_hh" + suffix)});
      }
    return lstm(var("x"), p);
  }

  fs::path dir_;
  json spec_;
  std::map<std::string, Var> vars_;
  std::map<std::string, Tensor> ints_;
  std::vector<std::string> order_;
};

}  // namespace
}  // namespace peft

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: op_oracle CASE_DIR [CASE_DIR ...]\n");
    return 2;
  }
  for (int i = 1; i < argc; ++i) {
    try {
      peft::Case(argv[i]).run();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "op_oracle: %s: %s\n", argv[i], e.what());
      return 1;
    }
  }
  return 0;
}
