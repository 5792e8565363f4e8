// peft detokenize: the text of token ids, with the model folder's tokenizer.
#include <climits>
#include <cstdint>
#include <cstdio>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "peft/peft.hpp"

namespace peft::cli {
namespace {

// "1,2,3" (commas and/or spaces) -> ids; false on anything that is not a non-negative integer.
bool parse_ids(const std::string& s, std::vector<int32_t>& out, std::string& bad) {
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ',' || s[i] == ' ' || s[i] == '\t')) ++i;
    if (i >= s.size()) break;
    size_t j = i;
    while (j < s.size() && s[j] != ',' && s[j] != ' ' && s[j] != '\t') ++j;
    const std::string item = s.substr(i, j - i);
    int64_t v = 0;
    bool ok = !item.empty() && item.size() <= 10;
    for (char c : item) ok = ok && c >= '0' && c <= '9';
    if (ok) v = std::stoll(item);
    if (!ok || v > INT32_MAX) {
      bad = item;
      return false;
    }
    out.push_back(static_cast<int32_t>(v));
    i = j;
  }
  return true;
}

Runner setup_detokenize(CLI::App& app) {
  struct Args {
    std::string model, ids;
    bool skip_special = false, json = false;
  };
  auto a = std::make_shared<Args>();
  app.add_option("--model", a->model, "model or tokenizer folder")->required()->type_name("DIR");
  app.add_option("--ids", a->ids, "token ids, comma-separated: 1,2,3")->required();
  app.add_flag("--skip-special-tokens", a->skip_special, "leave special tokens out of the text");
  app.add_flag("--json", a->json, "print {\"text\": ...}");
  return [a]() {
    std::vector<int32_t> ids;
    std::string bad;
    if (!parse_ids(a->ids, ids, bad)) {
      std::fprintf(stderr, "peft: error: --ids: \"%s\" is not a token id (expected e.g. 1,2,3)\n",
                   bad.c_str());
      return 2;
    }
    const api::Tokenizer tok = api::Tokenizer::load(a->model);
    for (int32_t id : ids)
      if (id >= tok.vocab_size() || tok.id_to_token(id).empty())
        throw api::Error(fmt::format("--ids: token id {} is not in the vocabulary of {} ({} ids)",
                                     id, a->model, tok.vocab_size()));
    const std::string text = tok.decode(ids, a->skip_special);
    if (a->json)
      std::printf("%s\n", nlohmann::json{{"text", text}}.dump().c_str());
    else
      std::printf("%s\n", text.c_str());
    return 0;
  };
}

PEFT_COMMAND("detokenize", "the text of token ids, with the folder's tokenizer", setup_detokenize);

}  // namespace
}  // namespace peft::cli
