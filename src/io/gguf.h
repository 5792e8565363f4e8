// GGUF (llama.cpp's model and adapter file), version 3, little-endian:
//   magic "GGUF", u32 version = 3, u64 tensor_count, u64 metadata_kv_count,
//   metadata_kv_count × { string key, u32 value_type, value },
//   tensor_count × { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset },
//   padding to general.alignment (32), then the tensor data, each tensor at its offset (relative
//   to the start of the data, a multiple of the alignment).
// A string is u64 length + bytes (no terminator); an array is u32 element type + u64 count +
// the elements. ne[] lists the dimensions innermost first, so a row-major [out, in] matrix is
// ne = {in, out}. Tensor types used here: F32 (0), F16 (1), Q4_0 (2), Q8_0 (8), I32 (26),
// BF16 (30); q8_0 / q4_0 blocks are our BlockQ8_0 / BlockQ4_0 byte for byte.
//
// The writer streams like the safetensors writer: the header (with every offset) first, then each
// tensor's bytes as its callback produces them, into an atomic file. The reader maps a file and
// validates the whole header (counts and lengths within the file, known types, each tensor's
// bytes inside the data section) before handing anything out; it serves tests and `peft info`.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace peft {

enum class GGUFValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

constexpr uint64_t kGGUFAlignment = 32;

// ggml's type id of one of our dtypes (F32, F16, BF16, I32, Q8_0, Q4_0).
uint32_t ggml_type_of(DType t);
// Ours of a ggml type id; Error for one we do not hold.
DType dtype_of_ggml_type(uint32_t ggml_type);

// One tensor to write: name, dtype, row-major shape (outermost first, as our tensors), and the
// function that produces its data when the writer reaches it (exactly that dtype and shape).
struct GGUFTensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::function<Tensor()> produce;
};

class GGUFWriter {
 public:
  // Metadata, in the order given; a key given twice is an internal error.
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_strings(const std::string& key, const std::vector<std::string>& v);
  void set_i32s(const std::string& key, const std::vector<int32_t>& v);
  void set_f32s(const std::string& key, const std::vector<float>& v);
  void add_tensor(GGUFTensorToWrite t);
  // Writes the file atomically (io/files.h).
  void write(const std::string& path) const;

 private:
  void begin_kv(const std::string& key, GGUFValueType type);
  std::vector<std::string> keys_;
  std::string kv_;  // the serialised key/value pairs
  std::vector<GGUFTensorToWrite> tensors_;
};

// A tensor's entry in a GGUF header.
struct GGUFTensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;  // row-major (ne reversed)
  uint64_t offset = 0;
};

class GGUFFile {
 public:
  // Maps and validates `path`; Error "PATH: ..." naming what is wrong.
  explicit GGUFFile(const std::string& path);
  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  // Metadata as JSON values (numbers, booleans, strings, arrays of them), by key.
  const std::map<std::string, nlohmann::json>& metadata() const { return metadata_; }
  // The value of `key`; Error naming the file and key when absent.
  const nlohmann::json& value(const std::string& key) const;
  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }  // in file order
  bool contains(const std::string& name) const;
  // A copy of a tensor's data (its stored dtype); Error when absent.
  Tensor get(const std::string& name) const;

 private:
  std::string path_;
  std::shared_ptr<Storage> storage_;
  uint32_t version_ = 0;
  uint64_t data_start_ = 0;
  std::map<std::string, nlohmann::json> metadata_;
  std::vector<GGUFTensorInfo> tensors_;
};

}  // namespace peft
