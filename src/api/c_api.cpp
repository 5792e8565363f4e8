// The C API (include/peft/peft.h): thin wrappers over the C++ API that turn exceptions into
// PEFT_ERROR and a per-thread message.
#include <cstdlib>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "peft/peft.h"
#include "peft/peft.hpp"

struct peft_model {
  peft::api::Model model;
};

namespace {

thread_local std::string last_error;

template <typename F>
peft_status call(F&& f) {
  try {
    f();
    return PEFT_OK;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown error";
  }
  return PEFT_ERROR;
}

std::string str(const char* s) {
  return s ? s : "";
}

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (!out) throw std::bad_alloc();
  std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

void require(const void* p, const char* what) {
  if (!p) throw peft::api::Error(std::string(what) + " is NULL");
}

}  // namespace

extern "C" {

const char* peft_version(void) {
  return peft::api::version();
}

const char* peft_last_error(void) {
  return last_error.c_str();
}

void peft_string_free(char* s) {
  std::free(s);
}

peft_status peft_model_load(const char* dir, const char* base_dtype, peft_model** out) {
  return call([&] {
    require(dir, "dir");
    require(out, "out");
    peft::api::LoadOptions o;
    o.base_dtype = str(base_dtype);
    *out = new peft_model{peft::api::Model::load(dir, o)};
  });
}

void peft_model_free(peft_model* model) {
  delete model;
}

int64_t peft_model_vocab_size(const peft_model* model) {
  return model ? model->model.info().vocab_size : 0;
}

peft_status peft_model_load_adapter(peft_model* model, const char* dir) {
  return call([&] {
    require(model, "model");
    require(dir, "dir");
    model->model.load_adapters({dir});
  });
}

peft_status peft_model_create_adapter(peft_model* model, const char* method,
                                      const char* settings_json, uint64_t seed) {
  return call([&] {
    require(model, "model");
    require(method, "method");
    std::map<std::string, std::string> settings;
    if (settings_json && *settings_json) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(settings_json);
      } catch (const nlohmann::json::exception& e) {
        throw peft::api::Error(std::string("settings: invalid JSON: ") + e.what());
      }
      if (!j.is_object()) throw peft::api::Error("settings: expected a JSON object");
      for (const auto& [k, v] : j.items())
        settings[k] = v.is_string() ? v.get<std::string>() : v.dump();
    }
    model->model.create_adapter(method, settings, seed);
  });
}

peft_status peft_model_save_adapter(const peft_model* model, const char* dir) {
  return call([&] {
    require(model, "model");
    require(dir, "dir");
    model->model.save_adapter(dir);
  });
}

peft_train_options peft_train_options_default(void) {
  const peft::api::TrainOptions d;
  peft_train_options o{};
  o.epochs = d.epochs;
  o.max_steps = d.max_steps;
  o.batch_size = d.batch_size;
  o.grad_accum = d.grad_accum;
  o.max_len = d.max_len;
  o.warmup_steps = d.warmup_steps;
  o.lr = d.lr;
  o.weight_decay = d.weight_decay;
  o.clip_grad = d.clip_grad;
  o.seed = d.seed;
  o.shuffle = d.shuffle ? 1 : 0;
  return o;
}

peft_status peft_model_train(peft_model* model, const peft_train_options* options,
                             peft_step_callback on_step, void* user, double* final_loss) {
  return call([&] {
    require(model, "model");
    require(options, "options");
    require(options->data, "options->data");
    peft::api::TrainOptions t;
    t.data = options->data;
    t.eval_data = str(options->eval_data);
    t.out_dir = str(options->out_dir);
    t.epochs = options->epochs;
    t.max_steps = options->max_steps;
    t.batch_size = options->batch_size;
    t.grad_accum = options->grad_accum;
    t.max_len = options->max_len;
    t.warmup_steps = options->warmup_steps;
    t.lr = options->lr;
    t.weight_decay = options->weight_decay;
    t.clip_grad = options->clip_grad;
    t.seed = options->seed;
    t.shuffle = options->shuffle != 0;
    peft::api::StepCallback cb = nullptr;
    if (on_step)
      cb = [&](const peft::api::StepInfo& s) {
        return on_step(s.step, s.total_steps, s.loss, s.lr, user) != 0;
      };
    const peft::api::TrainResult r = model->model.train(t, cb);
    if (final_loss) *final_loss = r.final_loss;
  });
}

peft_status peft_model_evaluate(peft_model* model, const char* data_file, double* loss, double* ppl,
                                int64_t* tokens) {
  return call([&] {
    require(model, "model");
    require(data_file, "data_file");
    const peft::api::EvalResult r = model->model.evaluate(data_file);
    if (loss) *loss = r.loss;
    if (ppl) *ppl = r.ppl;
    if (tokens) *tokens = r.tokens;
  });
}

peft_status peft_model_generate(peft_model* model, const char* prompt, int64_t max_new_tokens,
                                peft_text_callback on_text, void* user, char** text_out) {
  return call([&] {
    require(model, "model");
    require(prompt, "prompt");
    peft::api::GenerateOptions g;
    g.max_new_tokens = max_new_tokens;
    peft::api::TextCallback cb = nullptr;
    if (on_text) cb = [&](const std::string& piece) { return on_text(piece.c_str(), user) != 0; };
    const peft::api::GenerateResult r = model->model.generate(prompt, g, cb);
    if (text_out) *text_out = copy_string(r.text);
  });
}

peft_status peft_model_logits(peft_model* model, const int32_t* ids, size_t n, float* out,
                              size_t out_len) {
  return call([&] {
    require(model, "model");
    require(ids, "ids");
    require(out, "out");
    const std::vector<float> l = model->model.logits(std::vector<int32_t>(ids, ids + n));
    if (out_len < l.size())
      throw peft::api::Error("logits: out holds " + std::to_string(out_len) + " floats, " +
                             std::to_string(l.size()) + " needed");
    std::memcpy(out, l.data(), l.size() * sizeof(float));
  });
}

peft_status peft_model_merge(const peft_model* model, const char* out_dir, const char* dtype) {
  return call([&] {
    require(model, "model");
    require(out_dir, "out_dir");
    model->model.merge(out_dir, str(dtype));
  });
}

peft_status peft_model_export_gguf(const peft_model* model, const char* path, const char* dtype,
                                   int merge) {
  return call([&] {
    require(model, "model");
    require(path, "path");
    peft::api::ExportOptions o;
    o.dtype = str(dtype);
    o.merge = merge != 0;
    model->model.export_gguf(path, o);
  });
}

}  // extern "C"
