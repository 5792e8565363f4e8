// The torch checkpoint reader (io/torch_pickle.cpp) on hostile archives: regressions of what
// fuzzing the reader turned up (fuzz/fuzz_torch_pickle.cpp; docs/bad-input.md, "Fuzzing"). The
// plain round trip and the refused globals / opcodes are in tests/peft/test_bottleneck_adapter.cpp.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "io/torch_pickle.h"

namespace peft {
namespace {

using namespace std::string_literals;  // the pickles hold NUL bytes

void put_le(std::string& s, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s += char((v >> (8 * i)) & 0xFF);
}

// A zip archive of stored entries, as torch.save writes one (CRCs left 0: the reader does not
// check them).
std::string zip_of(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string z, central;
  for (const auto& [name, data] : entries) {
    const size_t header = z.size();
    put_le(z, 0x04034b50, 4);
    put_le(z, 20, 2);
    put_le(z, 0, 2);
    put_le(z, 0, 2);  // stored
    put_le(z, 0, 4);
    put_le(z, 0, 4);  // crc
    put_le(z, data.size(), 4);
    put_le(z, data.size(), 4);
    put_le(z, name.size(), 2);
    put_le(z, 0, 2);
    z += name + data;
    put_le(central, 0x02014b50, 4);
    put_le(central, 20, 2);
    put_le(central, 20, 2);
    put_le(central, 0, 2);
    put_le(central, 0, 2);
    put_le(central, 0, 4);
    put_le(central, 0, 4);
    put_le(central, data.size(), 4);
    put_le(central, data.size(), 4);
    put_le(central, name.size(), 2);
    put_le(central, 0, 6);
    put_le(central, 0, 2);
    put_le(central, 0, 4);
    put_le(central, header, 4);
    central += name;
  }
  const size_t at = z.size();
  z += central;
  put_le(z, 0x06054b50, 4);
  put_le(z, 0, 4);
  put_le(z, entries.size(), 2);
  put_le(z, entries.size(), 2);
  put_le(z, central.size(), 4);
  put_le(z, at, 4);
  put_le(z, 0, 2);
  return z;
}

// Writes archive/data.pkl = pkl and archive/data/0 = storage; returns the path.
std::string checkpoint(const std::string& name, const std::string& pkl,
                       const std::string& storage = std::string(4, '\0')) {
  const std::string dir = ::testing::TempDir() + "/peft_io_torch_pickle";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/" + name + ".bin";
  std::ofstream(path, std::ios::binary)
      << zip_of({{"archive/data.pkl", pkl}, {"archive/data/0", storage}});
  return path;
}

std::string pickle_int(int64_t v) {
  std::string p(1, char(0x8a));
  p += char(8);
  put_le(p, uint64_t(v), 8);
  return p;
}

// {"t": _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', 1), offset, size, stride, ...)}.
std::string tensor_pickle(const std::vector<int64_t>& size, const std::vector<int64_t>& stride,
                          int64_t offset = 0) {
  std::string p = "\x80\x02}(X\x01\x00\x00\x00tctorch._utils\n_rebuild_tensor_v2\n(("s;
  // (Adjacent literals: a hex escape would swallow a following 0 or c.)
  p += "X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00"s
       "0X\x03\x00\x00\x00"s
       "cpu";
  p += pickle_int(1) + "tQ" + pickle_int(offset) + "(";
  for (int64_t s : size) p += pickle_int(s);
  p += "t(";
  for (int64_t s : stride) p += pickle_int(s);
  p += "t\x89)tRu.";
  return p;
}

std::string error_of(const std::string& path) {
  try {
    read_torch_checkpoint(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(TorchPickle, TheTestArchiveReadsBack) {
  const std::string one = "\x00\x00\x80\x3f"s;  // 1.0f
  const auto t = read_torch_checkpoint(checkpoint("plain", tensor_pickle({1}, {1}), one));
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t.at("t").to_vector(), std::vector<float>{1.0f});
}

// A dict memoised and stored into itself was a reference cycle of shared_ptrs: leaked (a finding
// of LeakSanitizer under the fuzzer and the sanitizer job).
TEST(TorchPickle, SelfReferencingDictIsRefusedAndFreed) {
  const std::string pkl = "\x80\x02}q\x00h\x00h\x00s."s;
  EXPECT_NE(error_of(checkpoint("cycle", pkl)).find("must map a name to a tensor"),
            std::string::npos);
}

// A million nested tuples (a 1 MB pickle) were freed by a recursion as deep: a stack overflow.
TEST(TorchPickle, DeeplyNestedValuesAreFreedWithoutRecursion) {
  const std::string pkl = "\x80\x02)" + std::string(1000000, '\x85') + ".";
  EXPECT_NE(error_of(checkpoint("deep", pkl)).find("no dict of tensors"), std::string::npos);
}

// A zero stride made one stored float a 2^40-element tensor: 4 TiB allocated (std::bad_alloc, or
// ASan's allocation-size-too-big), not an Error.
TEST(TorchPickle, ZeroStrideCannotTurnAFewBytesIntoATerabyte) {
  const std::string e = error_of(checkpoint("stride0", tensor_pickle({int64_t(1) << 40}, {0})));
  EXPECT_NE(e.find("more elements than its 4 bytes hold"), std::string::npos) << e;
}

// Sizes and strides whose products overflow int64 (undefined behaviour before) are refused.
TEST(TorchPickle, OverflowingSizesAndStridesAreRefused) {
  const int64_t big = int64_t(1) << 62;
  for (const auto& [size, stride, offset] :
       std::vector<std::tuple<std::vector<int64_t>, std::vector<int64_t>, int64_t>>{
           {{big, 4}, {1, 1}, 0},
           {{4, big}, {1, 1}, 0},
           {{1, 2}, {0, big}, 0},
           {{1}, {1}, big},
           {{0, 5}, {big, big}, big}}) {
    const std::string path = checkpoint("overflow", tensor_pickle(size, stride, offset));
    if (size[0] == 0) {  // no element is read: an empty tensor, whatever its strides
      EXPECT_EQ(read_torch_checkpoint(path).at("t").numel(), 0);
      continue;
    }
    const std::string e = error_of(path);
    EXPECT_TRUE(e.find("more elements than") != std::string::npos ||
                e.find("reads past its float32 storage") != std::string::npos)
        << e;
  }
}

}  // namespace
}  // namespace peft
