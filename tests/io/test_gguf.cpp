#include <gtest/gtest.h>

#include <unistd.h>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/files.h"
#include "io/gguf.h"

namespace peft {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("peft_gguf_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

Tensor ramp(Shape shape, float scale) {
  std::vector<float> v(size_t(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = scale * (float(i % 37) - 18.0f);
  return Tensor::from_vector(v, shape);
}

std::string error_of(const std::string& path) {
  try {
    GGUFFile f(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string bytes_of(const std::string& path) {
  return read_text_file(path);
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(GGUF, WriteThenReadGivesBackMetadataShapesAndBitExactData) {
  TempDir dir;
  const std::string path = dir.file("m.gguf");
  const Tensor a = ramp({3, 64}, 0.25f);   // 2-D: ne = {64, 3}
  const Tensor b = ramp({5}, 1.5f);        // 1-D
  const Tensor q = ramp({2, 32}, 0.125f);  // q8_0 blocks
  GGUFWriter w;
  w.set_string("general.architecture", "qwen2");
  w.set_u32("qwen2.block_count", 2);
  w.set_f32("adapter.lora.alpha", 16.0f);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_i32("x.i32", -7);
  w.set_strings("tokenizer.ggml.tokens", {"a", "", "\xC4\xA0hello"});
  w.set_i32s("tokenizer.ggml.token_type", {1, 3, 1});
  w.set_f32s("tokenizer.ggml.scores", {0.5f, -1.0f});
  w.add_tensor({"a.weight", DType::F32, a.shape(), [&] { return a; }});
  w.add_tensor({"b.bias", DType::BF16, b.shape(), [&] { return b.to(DType::BF16); }});
  w.add_tensor({"q.weight", DType::Q8_0, q.shape(), [&] { return q.to(DType::Q8_0); }});
  w.write(path);

  GGUFFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.value("general.architecture"), "qwen2");
  EXPECT_EQ(f.value("qwen2.block_count"), 2);
  EXPECT_EQ(f.value("adapter.lora.alpha"), 16.0);
  EXPECT_EQ(f.value("tokenizer.ggml.add_bos_token"), true);
  EXPECT_EQ(f.value("x.i32"), -7);
  EXPECT_EQ(f.value("tokenizer.ggml.tokens"), nlohmann::json({"a", "", "\xC4\xA0hello"}));
  EXPECT_EQ(f.value("tokenizer.ggml.token_type"), nlohmann::json({1, 3, 1}));
  EXPECT_EQ(f.value("tokenizer.ggml.scores"), nlohmann::json({0.5, -1.0}));
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensors()[0].shape, (Shape{3, 64}));
  EXPECT_EQ(f.tensors()[1].dtype, DType::BF16);
  for (const GGUFTensorInfo& t : f.tensors()) EXPECT_EQ(t.offset % kGGUFAlignment, 0u) << t.name;
  auto same_bytes = [](const Tensor& x, const Tensor& y) {
    return x.nbytes() == y.nbytes() && std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
  };
  EXPECT_TRUE(same_bytes(f.get("a.weight"), a));
  EXPECT_TRUE(same_bytes(f.get("b.bias"), b.to(DType::BF16)));
  EXPECT_TRUE(same_bytes(f.get("q.weight"), q.to(DType::Q8_0)));
  EXPECT_THROW(f.get("missing"), Error);
  EXPECT_THROW(f.value("missing.key"), Error);
}

TEST(GGUF, HeaderLayoutIsTheSpecs) {
  TempDir dir;
  const std::string path = dir.file("h.gguf");
  GGUFWriter w;
  w.set_u32("k", 5);
  const Tensor t = ramp({2, 3}, 1.0f);
  w.add_tensor({"t", DType::F32, t.shape(), [&] { return t; }});
  w.write(path);
  const std::string b = bytes_of(path);
  auto u32 = [&](size_t at) {
    uint32_t v;
    std::memcpy(&v, b.data() + at, 4);
    return v;
  };
  auto u64 = [&](size_t at) {
    uint64_t v;
    std::memcpy(&v, b.data() + at, 8);
    return v;
  };
  EXPECT_EQ(b.substr(0, 4), "GGUF");
  EXPECT_EQ(u32(4), 3u);   // version
  EXPECT_EQ(u64(8), 1u);   // tensors
  EXPECT_EQ(u64(16), 1u);  // metadata pairs
  EXPECT_EQ(u64(24), 1u);  // key length
  EXPECT_EQ(b[32], 'k');
  EXPECT_EQ(u32(33), 4u);  // U32
  EXPECT_EQ(u32(37), 5u);
  EXPECT_EQ(u64(41), 1u);  // name length
  EXPECT_EQ(b[49], 't');
  EXPECT_EQ(u32(50), 2u);          // dims
  EXPECT_EQ(u64(54), 3u);          // ne[0]: the row length
  EXPECT_EQ(u64(62), 2u);          // ne[1]
  EXPECT_EQ(u32(70), 0u);          // F32
  EXPECT_EQ(u64(74), 0u);          // offset
  EXPECT_EQ(b.size(), 96u + 32u);  // header padded to 96, data 24 bytes padded to 32
  float first;
  std::memcpy(&first, b.data() + 96, 4);
  EXPECT_EQ(first, t.data<float>()[0]);
}

TEST(GGUF, CorruptFilesAreErrorsNamingTheFile) {
  TempDir dir;
  const std::string good = dir.file("good.gguf");
  GGUFWriter w;
  w.set_string("general.architecture", "llama");
  const Tensor t = ramp({4, 32}, 1.0f);
  w.add_tensor({"t", DType::F32, t.shape(), [&] { return t; }});
  w.write(good);
  const std::string bytes = bytes_of(good);

  const std::string bad = dir.file("bad.gguf");
  std::string m = bytes;
  m[0] = 'X';
  write_bytes(bad, m);
  EXPECT_NE(error_of(bad).find("bad magic"), std::string::npos) << error_of(bad);
  EXPECT_NE(error_of(bad).find(bad), std::string::npos);

  for (size_t cut : {size_t(3), size_t(20), size_t(40), bytes.size() - 1}) {
    write_bytes(bad, bytes.substr(0, cut));
    EXPECT_FALSE(error_of(bad).empty()) << "cut at " << cut;
  }
  m = bytes;
  const uint64_t huge = uint64_t(1) << 62;
  std::memcpy(m.data() + 16, &huge, 8);  // metadata count
  write_bytes(bad, m);
  EXPECT_NE(error_of(bad).find("exceeds the file size"), std::string::npos) << error_of(bad);
  EXPECT_NE(error_of(dir.file("absent.gguf")).find("not found"), std::string::npos);
}

}  // namespace
}  // namespace peft
