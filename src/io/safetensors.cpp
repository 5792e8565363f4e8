#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "core/error.h"
#include "io/files.h"

namespace peft {
namespace {

// The Hugging Face reader refuses headers above 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct StoredType {
  const char* name;
  DType dtype;   // what get() returns
  size_t bytes;  // per element as stored
};

constexpr StoredType kStoredTypes[] = {
    {"F32", DType::F32, 4}, {"BF16", DType::BF16, 2}, {"F16", DType::F16, 2},
    {"I32", DType::I32, 4}, {"I64", DType::I32, 8},
};

const StoredType* find_stored_type(const std::string& name) {
  for (const StoredType& t : kStoredTypes)
    if (name == t.name) return &t;
  return nullptr;
}

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Parses the header JSON, failing on a name that appears twice at the top level (nlohmann would
// otherwise keep the last silently).
nlohmann::json parse_header(const std::string& path, const char* text, size_t size) {
  std::string duplicate;
  std::unordered_set<std::string> seen;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, text + size, callback);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: the safetensors header is not valid JSON: {}", path, e.what());
  }
  if (!duplicate.empty()) fail("{}: tensor \"{}\" appears twice in the header", path, duplicate);
  if (!header.is_object())
    fail("{}: the safetensors header is a JSON {}, expected an object", path, header.type_name());
  return header;
}

uint64_t json_u64(const std::string& path, const std::string& name, const char* field,
                  const nlohmann::json& v) {
  if (!v.is_number_unsigned())
    fail("{}: tensor \"{}\": {} holds {}, expected a non-negative integer", path, name, field,
         v.dump());
  return v.get<uint64_t>();
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::BF16:
      return "BF16";
    case DType::F16:
      return "F16";
    case DType::I32:
      return "I32";
    default:
      fail("dtype {} cannot be stored in safetensors (expected f32, bf16, f16 or i32)",
           dtype_name(t));
  }
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  storage_ = map_file(path);
  const uint64_t file_size = storage_->size();
  const auto* bytes = static_cast<const unsigned char*>(storage_->data());
  if (file_size < 8)
    fail("{}: {} bytes, too short for a safetensors file (expected an 8-byte header length)", path,
         file_size);
  const uint64_t header_len = read_u64_le(bytes);
  if (header_len > kMaxHeaderBytes)
    fail("{}: header length {} exceeds the limit of {} bytes (not a safetensors file?)", path,
         header_len, kMaxHeaderBytes);
  if (header_len > file_size - 8)
    fail("{}: header length {} runs past the end of the {}-byte file (truncated?)", path,
         header_len, file_size);
  data_start_ = 8 + header_len;
  data_bytes_ = file_size - data_start_;

  const nlohmann::json header =
      parse_header(path, reinterpret_cast<const char*>(bytes + 8), size_t(header_len));
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object())
        fail("{}: __metadata__ is a JSON {}, expected an object", path, v.type_name());
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail("{}: __metadata__ \"{}\" holds {}, expected a string", path, m.key(),
               m.value().dump());
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object())
      fail("{}: tensor \"{}\": entry is {}, expected an object", path, name, v.dump());
    const auto dt = v.find("dtype");
    const auto sh = v.find("shape");
    const auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string())
      fail("{}: tensor \"{}\": missing or non-string \"dtype\"", path, name);
    if (sh == v.end() || !sh->is_array())
      fail("{}: tensor \"{}\": missing or non-array \"shape\"", path, name);
    if (off == v.end() || !off->is_array() || off->size() != 2)
      fail("{}: tensor \"{}\": \"data_offsets\" must be [begin, end]", path, name);
    SafetensorInfo info;
    info.name = name;
    info.stored_dtype = dt->get<std::string>();
    const StoredType* st = find_stored_type(info.stored_dtype);
    if (!st)
      fail("{}: tensor \"{}\": unsupported dtype \"{}\" (expected F32, BF16, F16, I32 or I64)",
           path, name, info.stored_dtype);
    info.dtype = st->dtype;
    uint64_t numel = 1;
    for (const nlohmann::json& d : *sh) {
      const uint64_t n = json_u64(path, name, "shape", d);
      if (n > uint64_t(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(numel, n, &numel) ||
          numel > uint64_t(std::numeric_limits<int64_t>::max()))
        fail("{}: tensor \"{}\": shape {} overflows", path, name, sh->dump());
      info.shape.push_back(int64_t(n));
    }
    info.begin = json_u64(path, name, "data_offsets", (*off)[0]);
    info.end = json_u64(path, name, "data_offsets", (*off)[1]);
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, uint64_t(st->bytes), &nbytes))
      fail("{}: tensor \"{}\": shape {} overflows", path, name, sh->dump());
    if (info.begin > info.end)
      fail("{}: tensor \"{}\": data_offsets [{}, {}] end before they begin", path, name, info.begin,
           info.end);
    if (info.end > data_bytes_)
      fail("{}: tensor \"{}\": data_offsets [{}, {}] run past the {} data bytes (truncated file?)",
           path, name, info.begin, info.end, data_bytes_);
    if (info.end - info.begin != nbytes)
      fail("{}: tensor \"{}\": {} {} needs {} bytes but data_offsets [{}, {}] hold {}", path, name,
           info.stored_dtype, shape_str(info.shape), nbytes, info.begin, info.end,
           info.end - info.begin);
    index_[name] = tensors_.size();
    tensors_.push_back(std::move(info));
  }

  // No two tensors may share a byte.
  std::vector<const SafetensorInfo*> by_offset;
  for (const SafetensorInfo& t : tensors_)
    if (t.end > t.begin) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const SafetensorInfo* a, const SafetensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const SafetensorInfo& a = *by_offset[i - 1];
    const SafetensorInfo& b = *by_offset[i];
    if (b.begin < a.end)
      fail("{}: tensors \"{}\" [{}, {}] and \"{}\" [{}, {}] overlap", path, a.name, a.begin, a.end,
           b.name, b.begin, b.end);
  }
}

const SafetensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail("{}: no tensor named \"{}\"", path_, name);
  return tensors_[it->second];
}

Tensor SafetensorsFile::get(const std::string& name) const {
  const SafetensorInfo& t = info(name);
  const uint64_t at = data_start_ + t.begin;
  if (t.stored_dtype == "I64") {
    Tensor out = Tensor::zeros(t.shape, DType::I32);
    int32_t* dst = out.data<int32_t>();
    const auto* src = static_cast<const unsigned char*>(storage_->data()) + at;
    for (int64_t i = 0, n = out.numel(); i < n; ++i) {
      int64_t v;
      std::memcpy(&v, src + 8 * i, 8);
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
        fail("{}: tensor \"{}\": I64 value {} at element {} does not fit in i32", path_, name, v,
             i);
      dst[i] = int32_t(v);
    }
    return out;
  }
  const size_t elem = dtype_bytes(t.dtype, 1);
  Tensor view = Tensor::from_storage(storage_, size_t(at), t.shape, t.dtype);
  if (at % elem == 0) return view;
  // Misaligned data (a foreign writer without HF's ordering): copy so loads stay aligned.
  return view.clone();
}

SafetensorsSet::SafetensorsSet(const std::string& dir, const std::string& stem) {
  const std::string single = join_path(dir, stem + ".safetensors");
  const std::string index = join_path(dir, stem + ".safetensors.index.json");
  auto add_file = [&](const std::string& path) {
    files_.push_back(std::make_unique<SafetensorsFile>(path));
    const size_t f = files_.size() - 1;
    for (const SafetensorInfo& t : files_[f]->tensors()) {
      auto [it, inserted] = where_.emplace(t.name, f);
      if (!inserted)
        fail("{}: tensor \"{}\" is in both {} and {}", source_, t.name, files_[it->second]->path(),
             path);
    }
  };
  if (file_exists(single)) {
    source_ = single;
    add_file(single);
    return;
  }
  if (!file_exists(index))
    fail("{}: no {}.safetensors or {}.safetensors.index.json in this folder", dir, stem, stem);
  source_ = index;
  const nlohmann::json j = read_json_file(index);
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    fail("{}: expected an object with a \"weight_map\" object", index);
  std::map<std::string, std::vector<std::string>> by_shard;  // sorted: deterministic order
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      fail("{}: weight_map \"{}\" holds {}, expected a file name", index, it.key(),
           it.value().dump());
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard.front() == '/' || shard.find("..") != std::string::npos)
      fail("{}: weight_map \"{}\" names \"{}\", expected a file in this folder", index, it.key(),
           shard);
    by_shard[shard].push_back(it.key());
  }
  if (by_shard.empty()) fail("{}: weight_map is empty", index);
  for (const auto& [shard, names] : by_shard) {
    add_file(join_path(dir, shard));
    for (const std::string& name : names)
      if (!files_.back()->contains(name))
        fail("{}: tensor \"{}\" is mapped to {}, which does not hold it", index, name, shard);
  }
}

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, f] : where_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

const SafetensorInfo& SafetensorsSet::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail("{}: no tensor named \"{}\"", source_, name);
  return files_[it->second]->info(name);
}

Tensor SafetensorsSet::get(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail("{}: no tensor named \"{}\"", source_, name);
  return files_[it->second]->get(name);
}

const std::string& SafetensorsSet::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) return source_;
  return files_[it->second]->path();
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Larger elements first (stable), as the Hugging Face writer orders them, so every tensor's
  // data stay aligned for its element type and readers can map them in place.
  std::vector<const TensorToWrite*> order;
  for (const TensorToWrite& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
    return dtype_bytes(a->dtype, 1) > dtype_bytes(b->dtype, 1);
  });
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const TensorToWrite* t : order) {
    if (t->name == "__metadata__" || !names.insert(t->name).second)
      fail("{}: tensor name \"{}\" given twice (or reserved)", path, t->name);
    const uint64_t bytes = dtype_bytes(t->dtype, shape_numel(t->shape));
    header[t->name] = {{"dtype", safetensors_dtype_name(t->dtype)},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');
  AtomicFile file(path);
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(uint64_t(text.size()) >> (8 * i));
  file.write(len, 8);
  file.write(text);
  for (const TensorToWrite* t : order) {
    const Tensor value = t->produce();
    if (value.dtype() != t->dtype || value.shape() != t->shape)
      fail("{}: tensor \"{}\" was declared {}{} but produced as {}", path, t->name,
           dtype_name(t->dtype), shape_str(t->shape), value.describe());
    if (value.nbytes()) file.write(value.raw(), value.nbytes());
  }
  file.commit();
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<TensorToWrite> list;
  list.reserve(tensors.size());
  for (const auto& entry : tensors) {
    const Tensor& t = entry.second;  // a named reference: Clang 14 cannot capture a binding
    list.push_back({entry.first, t.dtype(), t.shape(), [&t] { return t; }});
  }
  write_safetensors(path, list, metadata);
}

}  // namespace peft
