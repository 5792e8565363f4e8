#include "io/torch_pickle.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <optional>

#include "core/dtype.h"
#include "core/error.h"
#include "io/files.h"

namespace peft {
namespace {

// ---- zip (stored entries only; torch.save never compresses) ----

uint32_t crc32(const char* p, size_t n) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ uint8_t(p[i])) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint64_t le(const std::string& s, size_t at, int bytes, const std::string& path) {
  if (at + size_t(bytes) > s.size()) fail("{}: truncated zip archive", path);
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | uint8_t(s[at + size_t(i)]);
  return v;
}

// name -> [offset, size) of the entry's bytes inside the file.
std::map<std::string, std::pair<size_t, size_t>> zip_entries(const std::string& z,
                                                             const std::string& path) {
  if (z.size() < 22) fail("{}: not a torch checkpoint (too short for a zip archive)", path);
  size_t eocd = std::string::npos;
  for (size_t i = z.size() - 22 + 1; i-- > 0 && z.size() - i <= 22 + 65535;)
    if (le(z, i, 4, path) == 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd == std::string::npos)
    fail(
        "{}: not a torch checkpoint (no zip directory; legacy pre-1.6 torch.save files are not "
        "read)",
        path);
  const uint64_t count = le(z, eocd + 10, 2, path);
  size_t at = size_t(le(z, eocd + 16, 4, path));
  if (count == 0xFFFF || at == 0xFFFFFFFFu) fail("{}: zip64 archives are not supported", path);
  std::map<std::string, std::pair<size_t, size_t>> out;
  for (uint64_t e = 0; e < count; ++e) {
    if (le(z, at, 4, path) != 0x02014b50) fail("{}: corrupt zip central directory", path);
    const uint64_t method = le(z, at + 10, 2, path);
    const uint64_t csize = le(z, at + 20, 4, path), usize = le(z, at + 24, 4, path);
    const size_t name_len = le(z, at + 28, 2, path), extra_len = le(z, at + 30, 2, path),
                 comment_len = le(z, at + 32, 2, path);
    const size_t local = le(z, at + 42, 4, path);
    if (at + 46 + name_len > z.size()) fail("{}: corrupt zip central directory", path);
    const std::string name = z.substr(at + 46, name_len);
    if (method != 0) fail("{}: zip entry {} is compressed (torch.save stores entries)", path, name);
    if (csize != usize || csize == 0xFFFFFFFFu)
      fail("{}: zip entry {} has unsupported sizes", path, name);
    if (le(z, local, 4, path) != 0x04034b50) fail("{}: corrupt zip entry {}", path, name);
    const size_t data = local + 30 + le(z, local + 26, 2, path) + le(z, local + 28, 2, path);
    if (data + csize > z.size()) fail("{}: zip entry {} runs past the end of the file", path, name);
    out[name] = {data, size_t(csize)};
    at += 46 + name_len + extra_len + comment_len;
  }
  return out;
}

// ---- the pickle subset of a state dict ----

// Values point at each other by plain pointers into the Unpickler's arena, which owns them all:
// a hostile pickle can build cycles (a dict memoised and stored into itself) or chains a million
// deep, and neither may leak or recurse when freed.
struct Value;
using ValuePtr = Value*;
struct Value {
  enum class Kind {
    None,
    Bool,
    Int,
    Float,
    String,
    Tuple,
    Dict,
    Global,
    PersistentId,
    Tensor,
    Mark
  };
  Kind kind = Kind::None;
  int64_t i = 0;
  double f = 0;
  std::string s;                                   // String, Global ("module.name")
  std::vector<ValuePtr> items;                     // Tuple, PersistentId (its tuple)
  std::vector<std::pair<ValuePtr, ValuePtr>> map;  // Dict
  Tensor tensor;
};

const char* storage_dtype_name(const std::string& global, DType* dtype, int* bytes) {
  if (global == "torch.FloatStorage") return *dtype = DType::F32, *bytes = 4, "float32";
  if (global == "torch.HalfStorage") return *dtype = DType::F16, *bytes = 2, "float16";
  if (global == "torch.BFloat16Storage") return *dtype = DType::BF16, *bytes = 2, "bfloat16";
  if (global == "torch.DoubleStorage") return *dtype = DType::F32, *bytes = 8, "float64";
  return nullptr;
}

class Unpickler {
 public:
  Unpickler(const std::string& file, const std::string& path,
            const std::map<std::string, std::pair<size_t, size_t>>& entries,
            const std::string& archive)
      : z_(file), path_(path), entries_(entries), archive_(archive) {}

  ValuePtr run(size_t begin, size_t size) {
    p_ = begin;
    end_ = begin + size;
    while (true) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80:
          byte();
          break;  // PROTO
        case 0x95:
          bytes(8);
          break;  // FRAME
        case '}':
          push(make(Value::Kind::Dict));
          break;
        case ')':
          push(make(Value::Kind::Tuple));
          break;
        case '(':
          push(make(Value::Kind::Mark));
          break;
        case 'N':
          push(make(Value::Kind::None));
          break;
        case 0x88:
        case 0x89: {  // NEWTRUE, NEWFALSE
          auto v = make(Value::Kind::Bool);
          v->i = op == 0x88;
          push(v);
          break;
        }
        case 'K':
          push_int(int64_t(uint8_t(byte())));
          break;
        case 'M':
          push_int(int64_t(number(2)));
          break;
        case 'J':
          push_int(int64_t(int32_t(uint32_t(number(4)))));
          break;
        case 0x8a: {  // LONG1
          const int n = byte();
          if (n > 8) bad("a LONG1 wider than 64 bits");
          uint64_t v = number(n);
          if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t(0) << (8 * n);
          push_int(int64_t(v));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | uint8_t(byte());
          auto v = make(Value::Kind::Float);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 'X':
          push_string(bytes(size_t(number(4))));
          break;  // BINUNICODE
        case 0x8c:
          push_string(bytes(size_t(uint8_t(byte()))));
          break;     // SHORT_BINUNICODE
        case 'c': {  // GLOBAL module\nname\n
          const std::string module = line(), name = line();
          push_global(module + "." + name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          ValuePtr name = pop(), module = pop();
          if (name->kind != Value::Kind::String || module->kind != Value::Kind::String)
            bad("a STACK_GLOBAL without names");
          push_global(module->s + "." + name->s);
          break;
        }
        case 't':
          push(tuple(pop_mark()));
          break;
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          std::vector<ValuePtr> items(size_t(op - 0x84));
          for (size_t k = items.size(); k-- > 0;) items[k] = pop();
          push(tuple(std::move(items)));
          break;
        }
        case 'q':
          memo_[uint32_t(uint8_t(byte()))] = top();
          break;  // BINPUT
        case 'r':
          memo_[uint32_t(number(4))] = top();
          break;  // LONG_BINPUT
        case 0x94:
          memo_[uint32_t(memo_.size())] = top();
          break;  // MEMOIZE
        case 'h':
          push(memo(uint32_t(uint8_t(byte()))));
          break;  // BINGET
        case 'j':
          push(memo(uint32_t(number(4))));
          break;     // LONG_BINGET
        case 'Q': {  // BINPERSID
          ValuePtr id = pop();
          if (id->kind != Value::Kind::Tuple) bad("a persistent id that is not a tuple");
          id->kind = Value::Kind::PersistentId;
          push(id);
          break;
        }
        case 'R': {  // REDUCE
          ValuePtr args = pop(), callable = pop();
          if (callable->kind != Value::Kind::Global || args->kind != Value::Kind::Tuple)
            bad("a REDUCE of something that is not an allowed global");
          push(reduce(callable->s, args->items));
          break;
        }
        case 's': {  // SETITEM
          ValuePtr v = pop(), k = pop();
          dict_top().push_back({k, v});
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<ValuePtr> kv = pop_mark();
          if (kv.size() % 2) bad("SETITEMS with an odd number of items");
          auto& d = dict_top();
          for (size_t k = 0; k < kv.size(); k += 2) d.push_back({kv[k], kv[k + 1]});
          break;
        }
        case '.':
          return pop();  // STOP
        default:
          fail(
              "{}: refusing to read this pickle: opcode 0x{:02x} is not one a tensor checkpoint "
              "uses (only plain tensors in a dict are read; no pickle code is ever run)",
              path_, op);
      }
    }
  }

 private:
  [[noreturn]] void bad(const char* what) {
    fail("{}: refusing to read this pickle: {} (only plain tensors in a dict are read)", path_,
         what);
  }
  char byte() {
    if (p_ >= end_) bad("it ends before STOP");
    return z_[p_++];
  }
  std::string bytes(size_t n) {
    if (n > end_ - p_) bad("a string runs past its end");
    std::string s = z_.substr(p_, n);
    p_ += n;
    return s;
  }
  uint64_t number(int n) {
    uint64_t v = 0;
    for (int k = 0; k < n; ++k) v |= uint64_t(uint8_t(byte())) << (8 * k);
    return v;
  }
  std::string line() {
    std::string s;
    for (char c = byte(); c != '\n'; c = byte()) s += c;
    return s;
  }
  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  void push_int(int64_t i) {
    auto v = make(Value::Kind::Int);
    v->i = i;
    push(v);
  }
  void push_string(std::string s) {
    auto v = make(Value::Kind::String);
    v->s = std::move(s);
    push(v);
  }
  void push_global(const std::string& name) {
    DType d;
    int b;
    if (name != "collections.OrderedDict" && name != "torch._utils._rebuild_tensor_v2" &&
        !storage_dtype_name(name, &d, &b))
      fail(
          "{}: refusing to read this pickle: it names the global {} (only collections.OrderedDict, "
          "torch._utils._rebuild_tensor_v2 and float tensor storages are allowed; no pickle code "
          "is ever run)",
          path_, name);
    auto v = make(Value::Kind::Global);
    v->s = name;
    push(v);
  }
  ValuePtr pop() {
    if (stack_.empty() || stack_.back()->kind == Value::Kind::Mark) bad("its stack underflows");
    ValuePtr v = stack_.back();
    stack_.pop_back();
    return v;
  }
  ValuePtr top() {
    if (stack_.empty()) bad("it memoises an empty stack");
    return stack_.back();
  }
  ValuePtr memo(uint32_t i) {
    auto it = memo_.find(i);
    if (it == memo_.end()) bad("it reads a memo slot never written");
    return it->second;
  }
  std::vector<ValuePtr> pop_mark() {
    std::vector<ValuePtr> items;
    while (!stack_.empty() && stack_.back()->kind != Value::Kind::Mark) {
      items.push_back(stack_.back());
      stack_.pop_back();
    }
    if (stack_.empty()) bad("it has no MARK where one is needed");
    stack_.pop_back();
    return {items.rbegin(), items.rend()};
  }
  ValuePtr make(Value::Kind k) {
    Value& v = values_.emplace_back();
    v.kind = k;
    return &v;
  }
  ValuePtr tuple(std::vector<ValuePtr> items) {
    auto v = make(Value::Kind::Tuple);
    v->items = std::move(items);
    return v;
  }
  std::vector<std::pair<ValuePtr, ValuePtr>>& dict_top() {
    if (stack_.empty() || stack_.back()->kind != Value::Kind::Dict) bad("SETITEM(S) on a non-dict");
    return stack_.back()->map;
  }
  std::vector<int64_t> ints(const ValuePtr& v, const char* what) {
    if (v->kind != Value::Kind::Tuple) bad(what);
    std::vector<int64_t> out;
    for (const auto& e : v->items) {
      if (e->kind != Value::Kind::Int || e->i < 0) bad(what);
      out.push_back(e->i);
    }
    return out;
  }

  ValuePtr reduce(const std::string& callable, const std::vector<ValuePtr>& args) {
    if (callable == "collections.OrderedDict") {
      if (!args.empty()) bad("an OrderedDict built from arguments");
      return make(Value::Kind::Dict);
    }
    if (callable != "torch._utils._rebuild_tensor_v2" || args.size() < 4)
      bad("a REDUCE that is not a tensor rebuild");
    const ValuePtr& id = args[0];
    if (id->kind != Value::Kind::PersistentId || id->items.size() != 5 ||
        id->items[0]->kind != Value::Kind::String || id->items[0]->s != "storage" ||
        id->items[1]->kind != Value::Kind::Global || id->items[2]->kind != Value::Kind::String)
      bad("a tensor whose storage is not ('storage', type, key, location, numel)");
    DType dtype;
    int elem = 0;
    const char* dname = storage_dtype_name(id->items[1]->s, &dtype, &elem);
    if (!dname) bad("a tensor storage of a type that is not float");
    const std::string key = id->items[2]->s;
    if (key.find('/') != std::string::npos || key.find("..") != std::string::npos)
      bad("a storage key that is a path");
    auto it = entries_.find(archive_ + "data/" + key);
    if (it == entries_.end())
      fail("{}: storage {} of a tensor is missing from the archive", path_, key);
    const auto [data, size] = it->second;
    if (args[1]->kind != Value::Kind::Int || args[1]->i < 0) bad("a negative storage offset");
    const int64_t offset = args[1]->i;
    const std::vector<int64_t> shape = ints(args[2], "a tensor size that is not a tuple of ints");
    const std::vector<int64_t> stride =
        ints(args[3], "a tensor stride that is not a tuple of ints");
    if (shape.size() != stride.size()) bad("a tensor whose size and stride differ in length");
    // The last element read must lie inside the storage, and the tensor may not hold more
    // elements than its storage (a state dict's tensors are parameters or views of them; a
    // zero stride must not turn a few stored bytes into gigabytes). Checked without overflow:
    // every size, stride and offset is at most the storage's element count.
    const int64_t stored = int64_t(size / size_t(elem));
    int64_t last = offset, numel = 1;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] == 0) {
        numel = 0;
        break;
      }
      if (shape[d] > stored || numel > stored / shape[d])
        fail("{}: a tensor of {} storage {} has more elements than its {} bytes hold", path_, dname,
             key, size);
      numel *= shape[d];
      // Both factors below 2^31 (a zip entry is under 4 GiB, an element 2 bytes or more): no
      // overflow; a clamped term still lands past the end when the original one did.
      last = std::min(last, stored) + (shape[d] - 1) * std::min(stride[d], stored);
    }
    if (numel > 0 && (offset >= stored || last >= stored))
      fail("{}: a tensor reads past its {} storage {} ({} bytes)", path_, dname, key, size);
    Tensor t = Tensor::zeros(Shape(shape.begin(), shape.end()), DType::F32);
    float* out = t.data<float>();
    std::vector<int64_t> index(shape.size(), 0);
    for (int64_t n = 0; n < numel; ++n) {
      int64_t at = offset;
      for (size_t d = 0; d < shape.size(); ++d) at += index[d] * stride[d];
      const char* src = z_.data() + data + size_t(at) * size_t(elem);
      if (elem == 4) {
        std::memcpy(&out[n], src, 4);
      } else if (elem == 8) {
        double v;
        std::memcpy(&v, src, 8);
        out[n] = float(v);
      } else {
        uint16_t h;
        std::memcpy(&h, src, 2);
        out[n] = dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
      }
      for (size_t d = shape.size(); d-- > 0;) {
        if (++index[d] < shape[d]) break;
        index[d] = 0;
      }
    }
    auto v = make(Value::Kind::Tensor);
    v->tensor = t;
    return v;
  }

  const std::string& z_;
  const std::string& path_;
  const std::map<std::string, std::pair<size_t, size_t>>& entries_;
  std::string archive_;
  size_t p_ = 0, end_ = 0;
  std::deque<Value> values_;  // every value made, freed together
  std::vector<ValuePtr> stack_;
  std::map<uint32_t, ValuePtr> memo_;
};

// ---- writing ----

void put_le(std::string& s, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s += char((v >> (8 * i)) & 0xFF);
}

void pickle_string(std::string& p, const std::string& s) {
  p += 'X';
  put_le(p, s.size(), 4);
  p += s;
}

void pickle_int(std::string& p, int64_t v) {
  if (v >= 0 && v < (int64_t(1) << 31)) {
    p += 'J';
    put_le(p, uint64_t(v), 4);
  } else {
    p += char(0x8a);
    p += char(8);
    put_le(p, uint64_t(v), 8);
  }
}

}  // namespace

std::map<std::string, Tensor> read_torch_checkpoint(const std::string& path) {
  const std::string z = read_text_file(path);
  const auto entries = zip_entries(z, path);
  std::string archive;
  for (const auto& [name, span] : entries)
    if (name.ends_with("/data.pkl") && name.find('/') == name.size() - 9) {
      archive = name.substr(0, name.size() - 8);
      break;
    }
  if (archive.empty()) fail("{}: not a torch checkpoint (no ARCHIVE/data.pkl in the zip)", path);
  const auto [begin, size] = entries.at(archive + "data.pkl");
  Unpickler u(z, path, entries, archive);
  ValuePtr root = u.run(begin, size);
  if (root->kind != Value::Kind::Dict)
    fail("{}: the checkpoint holds no dict of tensors at its top level", path);
  std::map<std::string, Tensor> out;
  for (const auto& [k, v] : root->map) {
    if (k->kind != Value::Kind::String || v->kind != Value::Kind::Tensor)
      fail("{}: every entry of the checkpoint must map a name to a tensor", path);
    out[k->s] = v->tensor;
  }
  return out;
}

void write_torch_checkpoint(const std::string& path,
                            const std::vector<std::pair<std::string, Tensor>>& tensors) {
  const std::string archive = "archive/";
  std::string pkl = "\x80\x02}(";  // PROTO 2, EMPTY_DICT, MARK
  std::vector<std::pair<std::string, std::string>> files;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, tensor] = tensors[i];
    PEFT_CHECK(tensor.dtype() == DType::F32, "write_torch_checkpoint: f32 tensors only");
    pickle_string(pkl, name);
    pkl += "ctorch._utils\n_rebuild_tensor_v2\n((";
    pickle_string(pkl, "storage");
    pkl += "ctorch\nFloatStorage\n";
    pickle_string(pkl, std::to_string(i));
    pickle_string(pkl, "cpu");
    pickle_int(pkl, tensor.numel());
    pkl += "tQ";  // TUPLE, BINPERSID
    pickle_int(pkl, 0);
    pkl += '(';
    for (int64_t d : tensor.shape()) pickle_int(pkl, d);
    pkl += "t(";
    int64_t stride = 1;
    std::vector<int64_t> strides(tensor.shape().size());
    for (size_t d = strides.size(); d-- > 0;) strides[d] = stride, stride *= tensor.shape()[d];
    for (int64_t s : strides) pickle_int(pkl, s);
    pkl += "t\x89";                            // TUPLE, NEWFALSE (requires_grad)
    pkl += "ccollections\nOrderedDict\n)RtR";  // backward hooks, then the rebuild
    files.emplace_back(archive + "data/" + std::to_string(i),
                       std::string(static_cast<const char*>(tensor.raw()), tensor.nbytes()));
  }
  pkl += "u.";  // SETITEMS, STOP
  files.insert(files.begin(), {archive + "data.pkl", pkl});
  files.insert(files.begin() + 1, {archive + "byteorder", "little"});
  files.emplace_back(archive + "version", "3\n");

  // Zip: each entry's data 64-byte aligned (padding in the local header's extra field, as torch's
  // writer does), then the central directory and its end record.
  std::string z, central;
  for (const auto& [name, data] : files) {
    const size_t header = z.size();
    size_t pad = (64 - (header + 30 + name.size() + 4) % 64) % 64;
    const uint32_t crc = crc32(data.data(), data.size());
    std::string local;
    put_le(local, 0x04034b50, 4);
    put_le(local, 20, 2);  // version needed
    put_le(local, 0, 2);   // flags
    put_le(local, 0, 2);   // stored
    put_le(local, 0, 4);   // time, date
    put_le(local, crc, 4);
    put_le(local, data.size(), 4);
    put_le(local, data.size(), 4);
    put_le(local, name.size(), 2);
    put_le(local, 4 + pad, 2);
    local += name;
    put_le(local, 0x4246, 2);  // "FB": torch's padding field
    put_le(local, pad, 2);
    local += std::string(pad, 'Z');
    z += local + data;
    put_le(central, 0x02014b50, 4);
    put_le(central, 20, 2);  // version made by
    put_le(central, 20, 2);
    put_le(central, 0, 2);
    put_le(central, 0, 2);
    put_le(central, 0, 4);
    put_le(central, crc, 4);
    put_le(central, data.size(), 4);
    put_le(central, data.size(), 4);
    put_le(central, name.size(), 2);
    put_le(central, 0, 2);  // extra
    put_le(central, 0, 2);  // comment
    put_le(central, 0, 2);  // disk
    put_le(central, 0, 2);  // internal attributes
    put_le(central, 0, 4);  // external attributes
    put_le(central, header, 4);
    central += name;
  }
  const size_t central_at = z.size();
  z += central;
  put_le(z, 0x06054b50, 4);
  put_le(z, 0, 4);
  put_le(z, files.size(), 2);
  put_le(z, files.size(), 2);
  put_le(z, central.size(), 4);
  put_le(z, central_at, 4);
  put_le(z, 0, 2);
  if (z.size() >= 0xFFFFFFFFu) fail("{}: over 4 GiB; zip64 is not written", path);
  write_file_atomic(path, z);
}

}  // namespace peft
