// peft::api::Tokenizer: a folder's tokenizer without its model, for `peft tokenize` /
// `detokenize` and applications that need only the tokens.
#include "api/impl.h"
#include "tokenizer/config.h"

namespace peft::api {

struct Tokenizer::Impl {
  std::unique_ptr<peft::Tokenizer> tok;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& dir) {
  return guarded([&] {
    auto impl = std::make_unique<Impl>();
    impl->tok = load_tokenizer(dir);
    return Tokenizer(std::move(impl));
  });
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  return guarded([&] { return impl_->tok->encode(text, add_special_tokens); });
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return guarded([&] { return impl_->tok->decode(ids, skip_special_tokens); });
}

int64_t Tokenizer::vocab_size() const {
  return impl_->tok->vocab_size();
}

std::string Tokenizer::id_to_token(int32_t id) const {
  return guarded([&] { return impl_->tok->id_to_token(id); });
}

std::string read_file(const std::string& path) {
  return guarded([&] { return tok::read_text_file(path); });
}

}  // namespace peft::api
