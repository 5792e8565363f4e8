#include "infer/stop_tokens.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/files.h"

namespace peft {
namespace {

int64_t eos_id(const nlohmann::json& v, const std::string& path, int64_t vocab_size) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0)
    fail("{}: eos_token_id must be a token id or a list of token ids, found {}", path, v.dump());
  const int64_t id = v.get<int64_t>();
  if (vocab_size > 0 && id >= vocab_size)
    fail("{}: eos_token_id {} is not below the vocabulary size {}", path, id, vocab_size);
  return id;
}

}  // namespace

std::vector<int64_t> generation_eos_ids(const std::string& model_dir,
                                        const std::vector<int64_t>& config_eos,
                                        int64_t vocab_size) {
  const std::string path = join_path(model_dir, "generation_config.json");
  if (!file_exists(path)) return config_eos;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
  if (!j.is_object()) fail("{}: expected a JSON object", path);
  const auto it = j.find("eos_token_id");
  if (it == j.end() || it->is_null()) return config_eos;
  std::vector<int64_t> ids;
  if (it->is_array()) {
    for (const auto& v : *it) ids.push_back(eos_id(v, path, vocab_size));
  } else {
    ids.push_back(eos_id(*it, path, vocab_size));
  }
  return ids;
}

}  // namespace peft
