#include "io/gguf.h"

#include <cstring>
#include <set>

#include "core/error.h"
#include "core/storage.h"
#include "io/files.h"

namespace peft {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kVersion = 3;

template <typename T>
void put(std::string& out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));
  out.append(bytes, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

uint64_t align_up(uint64_t n) {
  return (n + kGGUFAlignment - 1) / kGGUFAlignment * kGGUFAlignment;
}

// Bytes of one fixed-size value type; 0 for strings and arrays.
size_t value_size(GGUFValueType t) {
  switch (t) {
    case GGUFValueType::U8:
    case GGUFValueType::I8:
    case GGUFValueType::Bool:
      return 1;
    case GGUFValueType::U16:
    case GGUFValueType::I16:
      return 2;
    case GGUFValueType::U32:
    case GGUFValueType::I32:
    case GGUFValueType::F32:
      return 4;
    case GGUFValueType::U64:
    case GGUFValueType::I64:
    case GGUFValueType::F64:
      return 8;
    default:
      return 0;
  }
}

}  // namespace

uint32_t ggml_type_of(DType t) {
  switch (t) {
    case DType::F32:
      return 0;
    case DType::F16:
      return 1;
    case DType::Q4_0:
      return 2;
    case DType::Q8_0:
      return 8;
    case DType::I32:
      return 26;
    case DType::BF16:
      return 30;
  }
  PEFT_CHECK(false, "unknown dtype {}", int(t));
  return 0;
}

DType dtype_of_ggml_type(uint32_t ggml_type) {
  for (DType t : {DType::F32, DType::F16, DType::Q4_0, DType::Q8_0, DType::I32, DType::BF16})
    if (ggml_type_of(t) == ggml_type) return t;
  fail("ggml tensor type {} is not one peft.cpp reads (f32, f16, bf16, i32, q8_0, q4_0)",
       ggml_type);
}

// ---- writer ----

void GGUFWriter::begin_kv(const std::string& key, GGUFValueType type) {
  for (const std::string& k : keys_) PEFT_CHECK(k != key, "GGUF key {} set twice", key);
  keys_.push_back(key);
  put_string(kv_, key);
  put<uint32_t>(kv_, uint32_t(type));
}

void GGUFWriter::set_u32(const std::string& key, uint32_t v) {
  begin_kv(key, GGUFValueType::U32);
  put(kv_, v);
}
void GGUFWriter::set_i32(const std::string& key, int32_t v) {
  begin_kv(key, GGUFValueType::I32);
  put(kv_, v);
}
void GGUFWriter::set_f32(const std::string& key, float v) {
  begin_kv(key, GGUFValueType::F32);
  put(kv_, v);
}
void GGUFWriter::set_bool(const std::string& key, bool v) {
  begin_kv(key, GGUFValueType::Bool);
  put<uint8_t>(kv_, v ? 1 : 0);
}
void GGUFWriter::set_string(const std::string& key, const std::string& v) {
  begin_kv(key, GGUFValueType::String);
  put_string(kv_, v);
}
void GGUFWriter::set_strings(const std::string& key, const std::vector<std::string>& v) {
  begin_kv(key, GGUFValueType::Array);
  put<uint32_t>(kv_, uint32_t(GGUFValueType::String));
  put<uint64_t>(kv_, v.size());
  for (const std::string& s : v) put_string(kv_, s);
}
void GGUFWriter::set_i32s(const std::string& key, const std::vector<int32_t>& v) {
  begin_kv(key, GGUFValueType::Array);
  put<uint32_t>(kv_, uint32_t(GGUFValueType::I32));
  put<uint64_t>(kv_, v.size());
  for (int32_t x : v) put(kv_, x);
}
void GGUFWriter::set_f32s(const std::string& key, const std::vector<float>& v) {
  begin_kv(key, GGUFValueType::Array);
  put<uint32_t>(kv_, uint32_t(GGUFValueType::F32));
  put<uint64_t>(kv_, v.size());
  for (float x : v) put(kv_, x);
}

void GGUFWriter::add_tensor(GGUFTensorToWrite t) {
  for (const GGUFTensorToWrite& o : tensors_)
    PEFT_CHECK(o.name != t.name, "GGUF tensor {} added twice", t.name);
  PEFT_CHECK(!t.shape.empty(), "GGUF tensor {} has no dimensions", t.name);
  PEFT_CHECK(!dtype_is_quantized(t.dtype) || t.shape.back() % kQuantBlock == 0,
             "GGUF tensor {}: {} rows need a multiple of {} values", t.name, dtype_name(t.dtype),
             kQuantBlock);
  tensors_.push_back(std::move(t));
}

void GGUFWriter::write(const std::string& path) const {
  std::string header;
  put<uint32_t>(header, kMagic);
  put<uint32_t>(header, kVersion);
  put<uint64_t>(header, tensors_.size());
  put<uint64_t>(header, keys_.size());
  header += kv_;
  uint64_t offset = 0;
  for (const GGUFTensorToWrite& t : tensors_) {
    put_string(header, t.name);
    put<uint32_t>(header, uint32_t(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(header, *it);
    put<uint32_t>(header, ggml_type_of(t.dtype));
    put<uint64_t>(header, offset);
    offset = align_up(offset + dtype_bytes(t.dtype, shape_numel(t.shape)));
  }
  header.resize(align_up(header.size()), '\0');

  AtomicFile file(path);
  file.write(header);
  uint64_t written = 0;
  const std::string zeros(kGGUFAlignment, '\0');
  for (const GGUFTensorToWrite& t : tensors_) {
    const Tensor data = t.produce();
    PEFT_CHECK(data.dtype() == t.dtype && data.shape() == t.shape,
               "GGUF tensor {}: produced {} {}, declared {} {}", t.name, dtype_name(data.dtype()),
               shape_str(data.shape()), dtype_name(t.dtype), shape_str(t.shape));
    file.write(data.raw(), data.nbytes());
    written += data.nbytes();
    const uint64_t pad = align_up(written) - written;
    file.write(zeros.data(), pad);
    written += pad;
  }
  file.commit();
}

// ---- reader ----

namespace {

// Bounds-checked reads over the mapped bytes; every failure names the file.
class Cursor {
 public:
  Cursor(const std::string& path, const char* data, uint64_t size)
      : path_(path), data_(data), size_(size) {}
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string string(const char* what) {
    const uint64_t n = get<uint64_t>(what);
    need(n, what);
    std::string s(data_ + pos_, n);
    pos_ += n;
    return s;
  }
  void need(uint64_t n, const char* what) const {
    if (n > size_ - pos_)
      fail("{}: truncated GGUF file ({} needs {} bytes at offset {}, the file has {})", path_, what,
           n, pos_, size_);
  }
  uint64_t pos() const { return pos_; }

 private:
  const std::string& path_;
  const char* data_;
  uint64_t size_, pos_ = 0;
};

nlohmann::json read_scalar(Cursor& c, GGUFValueType t, const std::string& path,
                           const std::string& key) {
  switch (t) {
    case GGUFValueType::U8:
      return c.get<uint8_t>("a value");
    case GGUFValueType::I8:
      return c.get<int8_t>("a value");
    case GGUFValueType::U16:
      return c.get<uint16_t>("a value");
    case GGUFValueType::I16:
      return c.get<int16_t>("a value");
    case GGUFValueType::U32:
      return c.get<uint32_t>("a value");
    case GGUFValueType::I32:
      return c.get<int32_t>("a value");
    case GGUFValueType::F32:
      return c.get<float>("a value");
    case GGUFValueType::Bool:
      return c.get<uint8_t>("a value") != 0;
    case GGUFValueType::String:
      return c.string("a string value");
    case GGUFValueType::U64:
      return c.get<uint64_t>("a value");
    case GGUFValueType::I64:
      return c.get<int64_t>("a value");
    case GGUFValueType::F64:
      return c.get<double>("a value");
    default:
      fail("{}: metadata {} has unknown value type {}", path, key, uint32_t(t));
  }
}

}  // namespace

GGUFFile::GGUFFile(const std::string& path) : path_(path) {
  if (!file_exists(path)) fail("{}: file not found", path);
  storage_ = map_file(path);
  const char* base = static_cast<const char*>(storage_->data());
  Cursor c(path_, base, storage_->size());
  if (c.get<uint32_t>("the magic") != kMagic) fail("{}: not a GGUF file (bad magic)", path);
  version_ = c.get<uint32_t>("the version");
  if (version_ != 2 && version_ != 3)
    fail("{}: GGUF version {} is not supported (expected 2 or 3)", path, version_);
  const uint64_t n_tensors = c.get<uint64_t>("the tensor count");
  const uint64_t n_kv = c.get<uint64_t>("the metadata count");
  // Every entry takes at least 8 bytes, so a count larger than the file is corrupt.
  if (n_tensors > storage_->size() / 8 || n_kv > storage_->size() / 8)
    fail("{}: tensor count {} or metadata count {} exceeds the file size", path, n_tensors, n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.string("a metadata key");
    const auto type = GGUFValueType(c.get<uint32_t>("a value type"));
    nlohmann::json value;
    if (type == GGUFValueType::Array) {
      const auto elem = GGUFValueType(c.get<uint32_t>("an array type"));
      const uint64_t n = c.get<uint64_t>("an array length");
      if (elem == GGUFValueType::Array) fail("{}: metadata {} nests arrays", path, key);
      const size_t size = value_size(elem);
      // Each element takes at least `size` bytes (a string at least its 8-byte length).
      const uint64_t least = size == 0 ? 8 : size;
      c.need(n > UINT64_MAX / least ? UINT64_MAX : n * least, "an array");
      value = nlohmann::json::array();
      for (uint64_t j = 0; j < n; ++j) value.push_back(read_scalar(c, elem, path, key));
    } else {
      value = read_scalar(c, type, path, key);
    }
    if (!metadata_.emplace(key, std::move(value)).second)
      fail("{}: metadata key {} appears twice", path, key);
  }
  uint64_t alignment = kGGUFAlignment;
  if (auto it = metadata_.find("general.alignment"); it != metadata_.end()) {
    if (!it->second.is_number_unsigned() || it->second.get<uint64_t>() == 0)
      fail("{}: general.alignment must be a positive integer", path);
    alignment = it->second.get<uint64_t>();
  }
  std::set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GGUFTensorInfo t;
    t.name = c.string("a tensor name");
    const uint32_t n_dims = c.get<uint32_t>("a dimension count");
    if (n_dims == 0 || n_dims > 4) fail("{}: tensor {} has {} dimensions", path, t.name, n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.get<uint64_t>("a dimension");
      if (ne == 0 || ne > (uint64_t(1) << 40))
        fail("{}: tensor {} has dimension {}", path, t.name, ne);
      t.shape.insert(t.shape.begin(), int64_t(ne));
    }
    try {
      t.dtype = dtype_of_ggml_type(c.get<uint32_t>("a tensor type"));
    } catch (const Error& e) {
      fail("{}: tensor {}: {}", path, t.name, e.what());
    }
    t.offset = c.get<uint64_t>("a tensor offset");
    if (t.offset % alignment != 0)
      fail("{}: tensor {} offset {} is not a multiple of the alignment {}", path, t.name, t.offset,
           alignment);
    if (dtype_is_quantized(t.dtype) && t.shape.back() % kQuantBlock != 0)
      fail("{}: tensor {} is {} with rows of {} values (not a multiple of {})", path, t.name,
           dtype_name(t.dtype), t.shape.back(), kQuantBlock);
    if (!names.insert(t.name).second) fail("{}: tensor {} appears twice", path, t.name);
    tensors_.push_back(std::move(t));
  }
  data_start_ = (c.pos() + alignment - 1) / alignment * alignment;
  const uint64_t size = storage_->size();
  if (data_start_ > size && !tensors_.empty()) fail("{}: no data after the header", path);
  for (const GGUFTensorInfo& t : tensors_) {
    const uint64_t bytes = dtype_bytes(t.dtype, shape_numel(t.shape));
    if (t.offset > size - data_start_ || bytes > size - data_start_ - t.offset)
      fail("{}: tensor {} ({} bytes at data offset {}) lies past the end of the file", path, t.name,
           bytes, t.offset);
  }
}

const nlohmann::json& GGUFFile::value(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) fail("{}: metadata key {} is missing", path_, key);
  return it->second;
}

bool GGUFFile::contains(const std::string& name) const {
  for (const GGUFTensorInfo& t : tensors_)
    if (t.name == name) return true;
  return false;
}

Tensor GGUFFile::get(const std::string& name) const {
  for (const GGUFTensorInfo& t : tensors_)
    if (t.name == name) {
      Tensor out = Tensor::zeros(t.shape, t.dtype);
      std::memcpy(out.raw(), static_cast<const char*>(storage_->data()) + data_start_ + t.offset,
                  out.nbytes());
      return out;
    }
  fail("{}: tensor {} is missing", path_, name);
}

}  // namespace peft
