// Small-file helpers: reading text / JSON with errors that name the file, and atomic writes
// (temp file in the same folder, fsync, rename, fsync of the folder) so a crash never leaves a
// half-written config, checkpoint table or model file behind.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>

namespace peft {

// The whole file as bytes; throws Error naming the path when it cannot be read.
std::string read_text_file(const std::string& path);
// Parses a JSON file; throws Error "PATH: invalid JSON: ..." on a syntax error.
nlohmann::json read_json_file(const std::string& path);
bool file_exists(const std::string& path);       // a regular file
bool directory_exists(const std::string& path);  // a folder
// "dir/name" without doubling the slash.
std::string join_path(const std::string& dir, const std::string& name);

// A file that appears at `path` only when commit() succeeds. Bytes go to a temp file
// ".NAME.tmp.XXXXXX" in the same folder (so rename is atomic); commit() flushes, fsyncs, renames
// and fsyncs the folder. Destroying an uncommitted AtomicFile removes the temp file.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void write(const std::string& s) { write(s.data(), s.size()); }
  size_t bytes_written() const { return written_; }
  void commit();
  const std::string& path() const { return path_; }

 private:
  void flush_buffer();

  std::string path_, temp_path_;
  int fd_ = -1;
  size_t written_ = 0;
  std::string buffer_;  // small writes are batched
  bool committed_ = false;
};

// Writes `contents` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& contents);
// JSON with `indent` spaces (and keys in sorted order, as nlohmann::json stores them), a final
// newline, written atomically.
void write_json_atomic(const std::string& path, const nlohmann::json& j, int indent = 2);

}  // namespace peft
