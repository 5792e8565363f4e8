// safetensors (Hugging Face): u64 little-endian header length N, N bytes of JSON
//   {NAME: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"format": "pt"}}
// then the raw little-endian data; offsets count from the first byte after the header.
//
// Reading maps the file (core map_file) and validates the whole header before any tensor is
// handed out: header length within the file, valid JSON, known dtypes, shape × dtype size ==
// end − begin without overflow, offsets inside the data, no two tensors overlapping, no name
// twice. A tensor whose stored dtype we compute in (F32, BF16, F16, I32) is a zero-copy view of
// the mapping; I64 is read by converting to I32 (ids, position tables).
//
// Writing streams: the header (names, dtypes, shapes) is written first, then each tensor's bytes
// as a callback produces them, so a 7B model never needs two copies in memory. The file is written
// atomically (io/files.h), with `__metadata__` {"format": "pt"} and the header padded with
// spaces to a multiple of 8 bytes, as the Hugging Face writer does.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"

namespace peft {

// A tensor's entry in a safetensors header.
struct SafetensorInfo {
  std::string name;
  std::string stored_dtype;  // as in the file: "F32", "BF16", "F16", "I32", "I64"
  DType dtype = DType::F32;  // what get() returns (I64 is returned as I32)
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data section
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. Throws Error "PATH: ..." (naming the tensor where one is at fault).
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<SafetensorInfo>& tensors() const { return tensors_; }  // in header order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  // Throws Error naming the file and tensor when absent.
  const SafetensorInfo& info(const std::string& name) const;
  // The tensor, zero-copy when its stored dtype is used as is and its data are aligned for it;
  // otherwise (I64, or unaligned data) a converted / copied heap tensor.
  Tensor get(const std::string& name) const;
  // Bytes of the data section (after the header).
  uint64_t data_bytes() const { return data_bytes_; }

 private:
  std::string path_;
  std::shared_ptr<Storage> storage_;
  uint64_t data_start_ = 0, data_bytes_ = 0;
  std::vector<SafetensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// The tensors of a model folder: `model.safetensors`, or the shards listed by
// `model.safetensors.index.json` (`weight_map`: name -> shard file). Each shard is mapped once.
class SafetensorsSet {
 public:
  // `dir` is a folder; `prefix` the file stem ("model" -> model.safetensors /
  // model.safetensors.index.json). Throws Error when neither exists or a shard is bad.
  explicit SafetensorsSet(const std::string& dir, const std::string& stem = "model");

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  const SafetensorInfo& info(const std::string& name) const;
  Tensor get(const std::string& name) const;
  // Where a tensor lives (for error messages).
  const std::string& file_of(const std::string& name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // A name for error messages: the single file or the index.
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, size_t> where_;  // name -> index into files_
};

// One tensor to write: its header entry, and the function that produces its data when the writer
// reaches it (must return exactly `dtype` and `shape`). The returned tensor is released right
// after its bytes are written.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;  // f32, bf16, f16 or i32 (quantised types are not safetensors dtypes)
  Shape shape;
  std::function<Tensor()> produce;
};

// Streams the tensors to `path` atomically, in the given order.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
// Convenience for tensors already in memory.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
// The safetensors dtype name of ours ("F32", "BF16", "F16", "I32"); Error for q8_0 / q4_0.
const char* safetensors_dtype_name(DType t);

}  // namespace peft
