#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/rng.h"
#include "io/files.h"
#include "io/safetensors.h"

namespace peft {
namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/peft_io_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A raw safetensors file from a header string and data bytes (no padding, no checks).
void write_raw(const std::string& path, const std::string& header, const std::string& data,
               uint64_t header_len_override = 0) {
  std::ofstream f(path, std::ios::binary);
  const uint64_t n = header_len_override ? header_len_override : header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  f.write(reinterpret_cast<const char*>(len), 8);
  f << header << data;
}

// Expects SafetensorsFile(path) to throw an Error whose message contains every needle.
void expect_error(const std::string& path, std::initializer_list<const char*> needles) {
  try {
    SafetensorsFile f(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const InternalError& e) {
    ADD_FAILURE() << "internal error instead of a data error: " << e.what();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const char* n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << msg << " lacks " << n;
  }
}

TEST(Safetensors, WriteReadRoundTripIsBitExact) {
  const std::string dir = temp_dir("roundtrip");
  Rng rng(1);
  Tensor a = Tensor::zeros({3, 5});
  fill_normal(a, rng, 0, 1);
  Tensor b = a.to(DType::BF16).view({15});  // 30 bytes: an odd number of f32 slots
  Tensor c = a.to(DType::F16);
  Tensor ids = Tensor::from_vector_i32({1, -2, 3}, {3});
  Tensor empty = Tensor::zeros({0, 4});
  const std::string path = dir + "/model.safetensors";
  save_safetensors(path, {{"b.bf16", b}, {"a", a}, {"c", c}, {"ids", ids}, {"empty", empty}});

  SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.tensors().size(), 5u);
  for (auto& [name, t] : std::vector<std::pair<std::string, Tensor>>{
           {"a", a}, {"b.bf16", b}, {"c", c}, {"ids", ids}, {"empty", empty}}) {
    Tensor r = f.get(name);
    EXPECT_EQ(r.dtype(), t.dtype()) << name;
    EXPECT_EQ(r.shape(), t.shape()) << name;
    ASSERT_EQ(r.nbytes(), t.nbytes());
    if (t.nbytes()) {
      EXPECT_EQ(std::memcmp(r.raw(), t.raw(), t.nbytes()), 0) << name;
    }
    EXPECT_FALSE(r.writable()) << name << " should be a view of the mapping";
  }
  // Header padded to 8 bytes, as Hugging Face does.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_THROW(f.get("missing"), Error);
}

TEST(Safetensors, WriterStreamsAndReleasesEachTensor) {
  const std::string dir = temp_dir("stream");
  int produced = 0;
  std::vector<TensorToWrite> list;
  for (int i = 0; i < 4; ++i) {
    list.push_back({"t" + std::to_string(i), DType::F32, {2, 2}, [i, &produced] {
                      ++produced;
                      return Tensor::from_vector({float(i), 1, 2, 3}, {2, 2});
                    }});
  }
  write_safetensors(dir + "/x.safetensors", list);
  EXPECT_EQ(produced, 4);
  SafetensorsFile f(dir + "/x.safetensors");
  EXPECT_EQ(f.get("t3").to_vector()[0], 3.0f);
  // A producer that returns the wrong shape is an error and leaves no file (atomic).
  list[1].produce = [] { return Tensor::zeros({3}); };
  EXPECT_THROW(write_safetensors(dir + "/y.safetensors", list), Error);
  EXPECT_FALSE(fs::exists(dir + "/y.safetensors"));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(Safetensors, CorruptFilesGiveErrorsNamingFileAndTensor) {
  const std::string dir = temp_dir("corrupt");
  const std::string p = dir + "/bad.safetensors";
  const std::string data16(16, '\0');

  std::ofstream(p, std::ios::binary) << "abc";
  expect_error(p, {"too short"});

  write_raw(p, "{}", "", 1000);
  expect_error(p, {"runs past"});

  write_raw(p, "{}", "", uint64_t(1) << 62);
  expect_error(p, {"exceeds the limit"});

  write_raw(p, "{\"a\": {", data16);
  expect_error(p, {"not valid JSON"});

  write_raw(p, "[1, 2]", data16);
  expect_error(p, {"expected an object"});

  write_raw(p, R"({"w": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}})", data16);
  expect_error(p, {"\"w\"", "unsupported dtype", "F64"});

  write_raw(p, R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})", data16);
  expect_error(p, {"\"w\"", "needs 12 bytes"});

  write_raw(p, R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [4, 20]}})", data16);
  expect_error(p, {"\"w\"", "run past"});

  write_raw(p, R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", data16);
  expect_error(p, {"\"w\"", "end before"});

  write_raw(p,
            R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
            data16);
  expect_error(p, {"\"a\"", "\"b\"", "overlap"});

  write_raw(p,
            R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
            data16);
  expect_error(p, {"\"a\"", "twice"});

  // shape product overflows u64; and a product whose byte count overflows.
  write_raw(
      p,
      R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 16]}})",
      data16);
  expect_error(p, {"\"w\"", "overflows"});
  write_raw(p,
            R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 16]}})",
            data16);
  expect_error(p, {"\"w\"", "overflows"});

  write_raw(p, R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", data16);
  expect_error(p, {"\"w\"", "non-negative"});

  write_raw(p, R"({"w": {"dtype": "F32", "shape": [2]}})", data16);
  expect_error(p, {"\"w\"", "data_offsets"});

  write_raw(p, R"({"__metadata__": {"format": 1}})", data16);
  expect_error(p, {"__metadata__"});

  EXPECT_THROW(SafetensorsFile(dir + "/missing.safetensors"), Error);
}

// Every truncation and every single-byte corruption of a valid file either loads or gives an
// Error: never a crash or an internal error (run under ASan in CI).
TEST(Safetensors, TruncationsAndByteFlipsNeverCrash) {
  const std::string dir = temp_dir("fuzz");
  const std::string good = dir + "/good.safetensors";
  save_safetensors(good, {{"a", Tensor::from_vector({1, 2, 3, 4}, {2, 2})},
                          {"b", Tensor::from_vector_i32({5, 6}, {2})}});
  const std::string bytes = read_text_file(good);
  const std::string p = dir + "/f.safetensors";
  auto try_load = [&](const std::string& content) {
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
    try {
      SafetensorsFile f(p);
      for (const SafetensorInfo& t : f.tensors()) (void)f.get(t.name).to_vector();
    } catch (const InternalError& e) {
      ADD_FAILURE() << e.what();
    } catch (const Error&) {
    }
  };
  for (size_t n = 0; n < bytes.size(); n += 3) try_load(bytes.substr(0, n));
  Rng rng(3);
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string b = bytes;
    b[i] = static_cast<char>(rng.bits_at(i) & 0xff);
    try_load(b);
  }
}

TEST(Safetensors, ShardedFolderFollowsTheIndex) {
  const std::string dir = temp_dir("sharded");
  save_safetensors(dir + "/model-00001-of-00002.safetensors",
                   {{"x", Tensor::from_vector({1, 2}, {2})}});
  save_safetensors(dir + "/model-00002-of-00002.safetensors",
                   {{"y", Tensor::from_vector({3}, {1})}});
  write_json_atomic(
      dir + "/model.safetensors.index.json",
      {{"metadata", {{"total_size", 12}}},
       {"weight_map",
        {{"x", "model-00001-of-00002.safetensors"}, {"y", "model-00002-of-00002.safetensors"}}}});
  SafetensorsSet set(dir);
  EXPECT_EQ(set.names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(set.get("y").to_vector(), std::vector<float>{3});
  EXPECT_NE(set.file_of("x").find("00001"), std::string::npos);

  // An index that maps a tensor to a shard without it names both.
  write_json_atomic(dir + "/model.safetensors.index.json",
                    {{"weight_map", {{"z", "model-00001-of-00002.safetensors"}}}});
  try {
    SafetensorsSet bad(dir);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"z\""), std::string::npos) << e.what();
  }
  write_json_atomic(dir + "/model.safetensors.index.json", {{"weight_map", {{"z", "../etc"}}}});
  EXPECT_THROW(SafetensorsSet{dir}, Error);
  EXPECT_THROW(SafetensorsSet{temp_dir("empty")}, Error);
}

TEST(Safetensors, I64IsReadAsI32AndUnalignedDataIsCopied) {
  const std::string dir = temp_dir("i64");
  const std::string p = dir + "/x.safetensors";
  std::string data(2 + 16 + 8, '\0');
  const int64_t v[2] = {7, -9};
  std::memcpy(data.data() + 2, v, 16);
  const float f[2] = {1.5f, -2.5f};
  std::memcpy(data.data() + 18, f, 8);
  // Data start at an odd offset on purpose, so no tensor is aligned for its type.
  std::string header = R"({"pad": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]},)"
                       R"( "ids": {"dtype": "I64", "shape": [2], "data_offsets": [2, 18]},)"
                       R"( "w": {"dtype": "F32", "shape": [2], "data_offsets": [18, 26]}})";
  while ((8 + header.size()) % 8 != 1) header += ' ';
  write_raw(p, header, data);
  SafetensorsFile file(p);
  Tensor ids = file.get("ids");
  EXPECT_EQ(ids.dtype(), DType::I32);
  EXPECT_EQ(ids.data<int32_t>()[1], -9);
  Tensor w = file.get("w");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w.raw()) % 4, 0u);
  EXPECT_EQ(w.to_vector(), (std::vector<float>{1.5f, -2.5f}));
}

TEST(AtomicFile, UncommittedWriteLeavesNothing) {
  const std::string dir = temp_dir("atomic");
  const std::string p = dir + "/config.json";
  write_file_atomic(p, "old");
  {
    AtomicFile f(p);
    f.write("new contents");
  }  // not committed
  EXPECT_EQ(read_text_file(p), "old");
  write_json_atomic(p, {{"b", 1}, {"a", 2}});
  EXPECT_EQ(read_text_file(p), "{\n  \"a\": 2,\n  \"b\": 1\n}\n");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 1);
  EXPECT_THROW(read_json_file(dir + "/nope.json"), Error);
  write_file_atomic(p, "{oops");
  EXPECT_THROW(read_json_file(p), Error);
}

}  // namespace
}  // namespace peft
