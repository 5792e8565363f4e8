// What the files of src/api share: the state behind peft::api::Model, and the translation of the
// library's errors into peft::api::Error. Internal: applications see include/peft/peft.hpp only.
#pragma once

#include <memory>
#include <new>
#include <string>
#include <vector>

#include "core/interrupt.h"
#include "models/model.h"
#include "peft/method.h"
#include "peft/peft.hpp"
#include "tokenizer/tokenizer.h"

namespace peft::api {

// Runs f, turning the library's exceptions into the API's: peft::Interrupted into
// api::Interrupted, allocation failures into "out of memory", any other into api::Error.
template <typename F>
auto guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const api::Error&) {
    throw;
  } catch (const peft::Interrupted& e) {
    throw api::Interrupted(e.what(), peft::interrupt_signal());
  } catch (const std::bad_alloc&) {
    throw api::Error("out of memory");
  } catch (const std::exception& e) {
    throw api::Error(e.what());
  }
}

struct Model::Impl {
  std::string dir;
  std::unique_ptr<peft::Model> model;
  std::unique_ptr<peft::Tokenizer> tokenizer;
  std::unique_ptr<MethodSet> methods;
  std::vector<std::string> adapter_dirs;  // where the attached adapters came from ("" = fresh)

  const peft::Tokenizer& tok() const {
    if (!tokenizer) fail("{}: this needs the model's tokenizer files", dir);
    return *tokenizer;
  }
  ModelHooks* hooks() const { return methods ? methods->hooks() : nullptr; }
  int32_t pad_id() const { return tokenizer && tokenizer->pad_id() >= 0 ? tokenizer->pad_id() : 0; }
};

// The name a folder goes by: its last path component ("models/qwen-tiny/" -> "qwen-tiny").
std::string folder_name(const std::string& dir);

}  // namespace peft::api
