// peft tokenize: token ids of a text exactly as the model folder's Hugging Face tokenizer gives.
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "peft/peft.hpp"

namespace peft::cli {
namespace {

Runner setup_tokenize(CLI::App& app) {
  struct Args {
    std::string model, text, file;
    bool no_special = false, json = false, lines = false;
  };
  auto a = std::make_shared<Args>();
  app.add_option("--model", a->model, "model or tokenizer folder")->required()->type_name("DIR");
  CLI::Option_group* input = app.add_option_group("input", "what to tokenize (one of)");
  CLI::Option* text = input->add_option("--text", a->text, "the text");
  input->add_option("--file", a->file, "a file whose whole content is the text")->type_name("FILE");
  input->require_option(1);
  app.add_flag("--no-special-tokens", a->no_special,
               "no BOS/EOS/[CLS]/[SEP] (HF's add_special_tokens=False)");
  app.add_flag("--json", a->json, "print {\"ids\": [...]}");
  app.add_flag("--lines", a->lines,
               "tokenize each line on its own (without its \\n): one output line per input line; "
               "with --json, {\"ids\": [[...], ...]}");
  return [a, text]() {
    const std::string input = text->count() ? a->text : api::read_file(a->file);
    const api::Tokenizer tok = api::Tokenizer::load(a->model);
    std::vector<std::string_view> texts;
    if (a->lines) {
      for (size_t at = 0; at < input.size();) {
        size_t nl = input.find('\n', at);
        if (nl == std::string::npos) nl = input.size();
        texts.emplace_back(input.data() + at, nl - at);
        at = nl + 1;
      }
    } else {
      texts.emplace_back(input);
    }
    nlohmann::json all = nlohmann::json::array();
    for (std::string_view t : texts) {
      const std::vector<int32_t> ids = tok.encode(std::string(t), !a->no_special);
      if (a->json) {
        all.push_back(ids);
        continue;
      }
      std::string line;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i) line += ' ';
        line += std::to_string(ids[i]);
      }
      std::printf("%s\n", line.c_str());
    }
    if (a->json)
      std::printf("%s\n", nlohmann::json{{"ids", a->lines ? all : all[0]}}.dump().c_str());
    return 0;
  };
}

PEFT_COMMAND("tokenize", "token ids of a text, as the folder's Hugging Face tokenizer gives them",
             setup_tokenize);

}  // namespace
}  // namespace peft::cli
