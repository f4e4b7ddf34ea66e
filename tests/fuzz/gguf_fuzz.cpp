// libFuzzer target: arbitrary bytes through the GGUF parser, the model loader and the tokenizer
// loader; a tokenizer that loads encodes and decodes the input's last bytes (any bytes, valid
// UTF-8 or not) with and without special tokens. Any crash, sanitizer report or hang is a bug;
// errors are the expected outcome.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "engine/model/gguf.h"
#include "engine/model/llama_model.h"
#include "engine/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = edgeinf::GgufFile::parse(std::span<const uint8_t>(data, size));
  if (!file.ok()) return 0;
  auto tokenizer = edgeinf::Tokenizer::from_gguf(**file);
  if (tokenizer.ok()) {
    const size_t n = std::min<size_t>(size, 96);
    const std::string_view text(reinterpret_cast<const char*>(data + size - n), n);
    for (bool special : {false, true}) {
      const auto ids = (*tokenizer)->encode(text, special, special);
      (void)(*tokenizer)->decode(ids);
      for (edgeinf::TokenId id : ids) (void)(*tokenizer)->token_to_piece(id);
    }
  }
  (void)edgeinf::LlamaModel::from_gguf(std::move(*file));
  return 0;
}
