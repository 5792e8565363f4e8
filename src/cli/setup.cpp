#include "cli/setup.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "io/files.h"
#include "models/registry.h"

namespace peft::cli {

LoadedModel load_model_folder(const std::string& dir, const std::string& base_dtype) {
  LoadedModel m;
  LoadOptions opts;
  if (!base_dtype.empty()) opts.base_dtype = dtype_from_name(base_dtype);
  m.model = load_model(dir, opts);
  const bool has_tokenizer =
      file_exists(join_path(dir, "tokenizer.json")) || file_exists(join_path(dir, "vocab.json")) ||
      file_exists(join_path(dir, "tokenizer.model")) || file_exists(join_path(dir, "vocab.txt"));
  if (has_tokenizer) m.tokenizer = load_tokenizer(dir);
  return m;
}

std::unique_ptr<MethodSet> attach_adapter_folders(Model& model,
                                                  const std::vector<std::string>& dirs) {
  if (dirs.empty()) return nullptr;
  auto set = std::make_unique<MethodSet>(model);
  set->attach_folders(dirs);
  return set;
}

std::string folder_name(const std::string& dir) {
  std::filesystem::path p(dir);
  while (!p.empty() && !p.has_filename() && p.has_parent_path() && p != p.root_path())
    p = p.parent_path();  // "a/b/" -> "a/b"
  std::string name = p.filename().string();
  if (name.empty() || name == ".")
    name = std::filesystem::absolute(p).lexically_normal().parent_path().filename().string();
  return name.empty() ? dir : name;
}

double peak_rss_mb() {
  // VmHWM belongs to this program's address space; getrusage's ru_maxrss survives exec and would
  // report a large parent (e.g. a Python process that launched us) instead.
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // KiB on Linux
}

void copy_tokenizer_files(const std::string& from_dir, const std::string& to_dir) {
  for (const char* f :
       {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.model",
        "vocab.txt", "special_tokens_map.json", "generation_config.json"})
    if (file_exists(join_path(from_dir, f)))
      write_file_atomic(join_path(to_dir, f), read_text_file(join_path(from_dir, f)));
}

}  // namespace peft::cli
