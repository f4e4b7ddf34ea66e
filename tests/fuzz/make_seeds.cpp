// Writes a small seed corpus for the GGUF fuzzer: a tiny valid model-shaped file and variants.
#include <cstdio>
#include <string>

#include "engine/model/gguf_writer.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds DIR\n");
    return 2;
  }
  edgeinf::GgufWriter w;
  w.kv_str("general.architecture", "llama");
  w.kv_u32("llama.block_count", 1);
  w.kv_u32("llama.embedding_length", 8);
  w.kv_u32("llama.feed_forward_length", 16);
  w.kv_u32("llama.attention.head_count", 2);
  w.kv_u32("llama.attention.head_count_kv", 1);
  w.kv_str("tokenizer.ggml.model", "gpt2");
  w.kv_str("tokenizer.ggml.pre", "gpt2");
  w.kv_str_array("tokenizer.ggml.tokens", {"a", "b", "ab", "<|im_start|>"});
  w.kv_i32_array("tokenizer.ggml.token_type", {1, 1, 1, 3});
  w.kv_str_array("tokenizer.ggml.merges", {"a b"});
  w.tensor("token_embd.weight", {8, 4}, 0, std::vector<uint8_t>(8 * 4 * 4));
  w.tensor("output_norm.weight", {8}, 0, std::vector<uint8_t>(8 * 4));
  const std::vector<uint8_t> bytes = w.bytes();
  const std::string path = std::string(argv[1]) + "/seed_model.gguf";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 1;
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  return 0;
}
