// Helpers for the tokenizer tests: the shared assets, cached tokenizers, JSONL vectors.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace peft::testing {

// The test assets the project carries (tests/assets; PEFT_ASSETS_DIR overrides it, e.g. to check a
// fresh copy of ../shared/assets). They are part of every clone: a missing folder is a failure.
inline std::string assets_dir() {
  const char* env = std::getenv("PEFT_ASSETS_DIR");
  const std::string dir = env && *env ? env : PEFT_ASSETS_DIR;
  if (!std::filesystem::is_directory(dir)) {
    ADD_FAILURE() << "test assets folder " << dir << " is missing (PEFT_ASSETS_DIR)";
    throw std::runtime_error("missing " + dir);
  }
  return dir;
}

inline std::string tokenizer_dir(const std::string& name) {
  return assets_dir() + "/tokenizers/" + name;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Loading the 7 MB Qwen tokenizer.json takes a moment (much longer under ASan): load each folder
// once per test binary.
inline const Tokenizer& cached_tokenizer(const std::string& dir) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[dir];
  if (!slot) slot = load_tokenizer(dir);
  return *slot;
}

// A temporary folder holding copies of some files of a tokenizer folder (to test the other
// loaders of a folder that has tokenizer.json).
inline std::string folder_with(const std::string& src, const std::vector<std::string>& files,
                               const std::string& tag) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("peft-tok-" + tag + "-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (const auto& f : files)
    std::filesystem::copy_file(src + "/" + f, dir / f,
                               std::filesystem::copy_options::overwrite_existing);
  return dir.string();
}

inline std::string ids_str(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

inline std::vector<int32_t> json_ids(const nlohmann::json& j) {
  return j.get<std::vector<int32_t>>();
}

}  // namespace peft::testing
