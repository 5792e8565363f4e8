// bench_tokenizer: single-thread encode throughput (MB/s) of a model folder's tokenizer on about
// 10 MB of mixed English / Chinese / code text, encoded line by line. Prints one JSON line.
//
//   bench_tokenizer [--model DIR] [--mb 10] [--repeat 3] [--dump FILE] [--shared DIR]
//
// The text is made deterministically from shared/assets (the UCI sentiment sentences, the
// tokenizer test strings, Chinese lines drawn with a fixed LCG from bert-base-chinese's
// single-character vocabulary) and this repository's src/core + src/tokenizer sources. --dump
// writes it out so that bench/tokenizer_vs_hf.py runs HF tokenizers on exactly the same lines.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Lines of one source; the text is those lines repeated until it reaches the target size.
std::vector<std::string> corpus_lines(const fs::path& shared, const fs::path& source) {
  std::vector<std::string> english, chinese, code;
  const fs::path assets = shared / "assets";
  for (const char* name : {"amazon.json", "imdb.json"}) {
    const auto j = nlohmann::json::parse(
        read_file(assets / "datasets/uci-sentiment-labelled-sentences" / name));
    for (const auto& e : j)
      if (e.contains("text") && e["text"].is_string() && !e["text"].get<std::string>().empty())
        english.push_back(e["text"].get<std::string>());
  }
  for (const auto& s :
       nlohmann::json::parse(read_file(assets / "tokenizer-vectors/tools/test-strings.json"))) {
    std::istringstream in(s.get<std::string>());
    for (std::string line; std::getline(in, line);) english.push_back(line);
  }
  // Chinese: lines of 12..60 ideographs with full-width punctuation.
  std::vector<std::string> hanzi;
  {
    std::istringstream in(read_file(assets / "tokenizers/bert-base-chinese/vocab.txt"));
    for (std::string tok; std::getline(in, tok);)
      if (tok.size() == 3 && static_cast<unsigned char>(tok[0]) >= 0xE4 &&
          static_cast<unsigned char>(tok[0]) <= 0xE9)
        hanzi.push_back(tok);
  }
  uint64_t lcg = 42;
  auto next = [&](uint64_t n) {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (lcg >> 33) % n;
  };
  for (int i = 0; i < 4000 && !hanzi.empty(); ++i) {
    std::string line;
    const uint64_t len = 12 + next(48);
    for (uint64_t k = 0; k < len; ++k) {
      line += hanzi[next(hanzi.size())];
      if (next(9) == 0) line += next(2) ? "，" : "。";
    }
    chinese.push_back(line + "。");
  }
  std::vector<fs::path> files;
  for (const char* dir : {"src/core", "src/tokenizer"})
    for (const auto& e : fs::directory_iterator(source / dir))
      if (e.path().extension() == ".cpp" || e.path().extension() == ".h") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::istringstream in(read_file(f));
    for (std::string line; std::getline(in, line);) code.push_back(line);
  }
  // Interleave the three kinds block by block so that every part of the text is mixed.
  std::vector<std::string> lines;
  const size_t blocks = 20;
  for (size_t b = 0; b < blocks; ++b)
    for (const auto* v : {&english, &chinese, &code})
      for (size_t i = b * v->size() / blocks; i < (b + 1) * v->size() / blocks; ++i)
        lines.push_back((*v)[i]);
  return lines;
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path source = fs::absolute(__FILE__).parent_path().parent_path();
  fs::path shared = source.parent_path() / "shared";
  std::string model, dump;
  double mb = 10;
  int repeat = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_tokenizer: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model")
      model = value();
    else if (a == "--mb")
      mb = std::stod(value());
    else if (a == "--repeat")
      repeat = std::max(1, std::stoi(value()));
    else if (a == "--dump")
      dump = value();
    else if (a == "--shared")
      shared = value();
    else {
      std::fprintf(stderr,
                   "usage: bench_tokenizer [--model DIR] [--mb 10] [--repeat 3] [--dump FILE] "
                   "[--shared DIR]\n");
      return 2;
    }
  }
  if (model.empty()) model = (shared / "assets/tokenizers/qwen2.5").string();
  try {
    const std::vector<std::string> base = corpus_lines(shared, source);
    std::vector<std::string> lines;
    size_t bytes = 0;
    const size_t target = static_cast<size_t>(mb * 1e6);
    while (bytes < target)
      for (const std::string& l : base) {
        lines.push_back(l);
        bytes += l.size();
        if (bytes >= target) break;
      }
    if (!dump.empty()) {
      std::ofstream out(dump, std::ios::binary);
      for (const std::string& l : lines) out << l << '\n';
    }
    const auto load0 = std::chrono::steady_clock::now();
    const auto tok = peft::load_tokenizer(model);
    const double load_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - load0).count();
    double best = 1e30;
    size_t tokens = 0;
    uint64_t checksum = 0;
    for (int r = 0; r < repeat; ++r) {
      tokens = 0;
      checksum = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (const std::string& l : lines) {
        const std::vector<int32_t> ids = tok->encode(l, false);
        tokens += ids.size();
        for (int32_t id : ids) checksum = checksum * 31 + static_cast<uint64_t>(id);
      }
      best = std::min(best,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    nlohmann::json out = {{"bench", "tokenizer"},
                          {"impl", "peft.cpp"},
                          {"model", fs::path(model).filename().string()},
                          {"kind", tok->kind()},
                          {"lines", lines.size()},
                          {"bytes", bytes},
                          {"tokens", tokens},
                          {"checksum", std::to_string(checksum)},
                          {"seconds", best},
                          {"mb_per_s", bytes / 1e6 / best},
                          {"load_seconds", load_s},
                          {"threads", 1}};
    std::printf("%s\n", out.dump().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tokenizer: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
