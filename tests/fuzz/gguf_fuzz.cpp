// libFuzzer target: arbitrary bytes through the GGUF parser, the model loader and the tokenizer
// loader. Any crash, sanitizer report or hang is a bug; errors are the expected outcome.
#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/model/gguf.h"
#include "engine/model/llama_model.h"
#include "engine/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = edgeinf::GgufFile::parse(std::span<const uint8_t>(data, size));
  if (!file.ok()) return 0;
  auto tokenizer = edgeinf::Tokenizer::from_gguf(**file);
  if (tokenizer.ok()) {
    const auto ids = (*tokenizer)->encode("Hello, world! 123 <|im_start|>", true, true);
    (void)(*tokenizer)->decode(ids);
  }
  (void)edgeinf::LlamaModel::from_gguf(std::move(*file));
  return 0;
}
