// Writes the seed corpora of the fuzzers:
//   DIR/gguf:      complete one-layer models that load all the way (llama with a BPE vocabulary and
//                  F32 weights, qwen2 with QKV biases and Q8_0, llama with a SentencePiece vocabulary
//                  and Q4_0/Q4_1), each also cut at a few points and with one tensor of the wrong
//                  shape (near-valid files);
//   DIR/snapshot:  a full snapshot and a delta record of every KV policy on the fuzzer's shape;
//   DIR/tokenizer: texts for the tokenizer fuzzer (prose, chat markup, whitespace and digits, many
//                  scripts and emoji, malformed UTF-8, combining marks, contractions).
#include <sys/stat.h>

#include <cstdio>
#include <random>
#include <string>

#include "engine/model/gguf_writer.h"
#include "kernels/reference/dequantize.h"
#include "tests/fuzz/snapshot_fuzz_shape.h"

namespace {

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return;
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

// Row-major [n_out][n_in] random weights encoded as `type`.
std::vector<uint8_t> weights(edgeinf::kernels::WeightType type, int64_t n_out, int64_t n_in, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 0.3f);
  std::vector<float> x(size_t(n_out * n_in));
  for (float& v : x) v = d(rng);
  const size_t row = edgeinf::kernels::row_bytes(type, n_in);
  std::vector<uint8_t> out(row * size_t(n_out));
  for (int64_t r = 0; r < n_out; ++r) {
    edgeinf::kernels::reference::quantize_row(type, x.data() + r * n_in, out.data() + size_t(r) * row, n_in);
  }
  return out;
}

struct ModelSeed {
  std::string name, arch, tokenizer;
  edgeinf::kernels::WeightType type;
  bool bias;
};

edgeinf::GgufWriter model(const ModelSeed& m, int64_t wrong_rows = 0) {
  using edgeinf::kernels::WeightType;
  std::mt19937 rng(7);
  const int64_t n_embd = 32, n_ff = 64, n_head = 4, n_kv = 2, hd = 8;
  edgeinf::GgufWriter w;
  w.kv_str("general.architecture", m.arch);
  w.kv_u32(m.arch + ".block_count", 1);
  w.kv_u32(m.arch + ".embedding_length", uint32_t(n_embd));
  w.kv_u32(m.arch + ".feed_forward_length", uint32_t(n_ff));
  w.kv_u32(m.arch + ".attention.head_count", uint32_t(n_head));
  w.kv_u32(m.arch + ".attention.head_count_kv", uint32_t(n_kv));
  w.kv_u32(m.arch + ".context_length", 256);
  w.kv_f32(m.arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
  std::vector<std::string> tokens;
  if (m.tokenizer == "gpt2") {
    tokens = {"a", "b", "c", "Ġ", "ab", "Ġa", "<|im_start|>", "<|im_end|>"};
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_str("tokenizer.ggml.pre", "smollm");
    w.kv_str_array("tokenizer.ggml.tokens", tokens);
    w.kv_i32_array("tokenizer.ggml.token_type", {1, 1, 1, 1, 1, 1, 3, 3});
    w.kv_str_array("tokenizer.ggml.merges", {"a b", "Ġ a"});
    w.kv_u32("tokenizer.ggml.eos_token_id", 7);
    w.kv_str("tokenizer.chat_template",
             "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}");
  } else {
    tokens = {"<unk>",
              "<s>",
              "</s>",
              "<0x41>",
              "\xe2\x96\x81",
              "\xe2\x96\x81"
              "a",
              "a",
              "b"};
    w.kv_str("tokenizer.ggml.model", "llama");
    w.kv_str_array("tokenizer.ggml.tokens", tokens);
    w.kv_f32_array("tokenizer.ggml.scores", {0, 0, 0, 0, -1, -2, -3, -4});
    w.kv_i32_array("tokenizer.ggml.token_type", {2, 3, 3, 6, 1, 1, 1, 1});
    w.kv_u32("tokenizer.ggml.bos_token_id", 1);
    w.kv_u32("tokenizer.ggml.eos_token_id", 2);
  }
  const int64_t n_vocab = int64_t(tokens.size());
  const auto t = uint32_t(m.type);
  auto matrix = [&](const std::string& name, int64_t n_out, int64_t n_in) {
    w.tensor(name, {n_in, n_out}, t, weights(m.type, n_out, n_in, rng));
  };
  auto vector = [&](const std::string& name, int64_t n) {
    w.tensor(name, {n}, uint32_t(WeightType::kF32), weights(WeightType::kF32, 1, n, rng));
  };
  matrix("token_embd.weight", n_vocab, n_embd);
  vector("output_norm.weight", n_embd);
  vector("blk.0.attn_norm.weight", n_embd);
  matrix("blk.0.attn_q.weight", wrong_rows > 0 ? wrong_rows : n_head * hd, n_embd);
  matrix("blk.0.attn_k.weight", n_kv * hd, n_embd);
  matrix("blk.0.attn_v.weight", n_kv * hd, n_embd);
  if (m.bias) {
    vector("blk.0.attn_q.bias", n_head * hd);
    vector("blk.0.attn_k.bias", n_kv * hd);
    vector("blk.0.attn_v.bias", n_kv * hd);
  }
  matrix("blk.0.attn_output.weight", n_embd, n_head * hd);
  vector("blk.0.ffn_norm.weight", n_embd);
  matrix("blk.0.ffn_gate.weight", n_ff, n_embd);
  matrix("blk.0.ffn_up.weight", n_ff, n_embd);
  matrix("blk.0.ffn_down.weight", n_embd, n_ff);
  return w;
}

void gguf_seeds(const std::string& dir) {
  using edgeinf::kernels::WeightType;
  const ModelSeed seeds[] = {{"llama_bpe_f32", "llama", "gpt2", WeightType::kF32, false},
                             {"qwen2_bpe_q8_0", "qwen2", "gpt2", WeightType::kQ8_0, true},
                             {"llama_spm_q4_0", "llama", "llama", WeightType::kQ4_0, false},
                             {"llama_spm_q4_1", "llama", "llama", WeightType::kQ4_1, false}};
  for (const ModelSeed& m : seeds) {
    const std::vector<uint8_t> bytes = model(m).bytes();
    write_file(dir + "/" + m.name + ".gguf", bytes);
    for (size_t cut : {size_t(24), bytes.size() / 3, bytes.size() - 1}) {
      write_file(dir + "/" + m.name + ".cut" + std::to_string(cut) + ".gguf",
                 std::vector<uint8_t>(bytes.begin(), bytes.begin() + int64_t(cut)));
    }
    write_file(dir + "/" + m.name + ".wrong_shape.gguf", model(m, 24).bytes());
  }
}

void snapshot_seeds(const std::string& dir) {
  for (const std::string& name : edgeinf::kv_policy_names()) {
    const edgeinf::fuzz::SnapshotSeed seed = edgeinf::fuzz::make_snapshot_seed(name);
    std::vector<uint8_t> full(seed.full.begin(), seed.full.end()), delta(seed.delta.begin(), seed.delta.end());
    full.insert(full.begin(), uint8_t(edgeinf::fuzz::policy_index(name) * 2));
    write_file(dir + "/" + name + ".full", full);
    if (!seed.delta.empty()) {
      delta.insert(delta.begin(), uint8_t(edgeinf::fuzz::policy_index(name) * 2 + 1));
      write_file(dir + "/" + name + ".delta", delta);
    }
  }
}

// The tokenizer fuzzer's first byte: bit 0 parses control tokens; the rest picks the stop string.
void tokenizer_seeds(const std::string& dir) {
  const std::string texts[] = {
      "The quick brown fox jumps over the lazy dog.",
      "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
      "  leading spaces,\ttabs\r\nand 12345 digits 3.14159",
      "caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",
      "broken \xc3 \xe2\x82 \xf0\x9f\x98 \xff\xfe\xed\xa0\x80 bytes",
      "e\xcc\x81 \xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\x82 combining marks",
      "I'm you'll we've THEY'RE don't"};
  uint8_t flag = 0;
  for (const std::string& text : texts) {
    std::vector<uint8_t> bytes(text.begin(), text.end());
    bytes.insert(bytes.begin(), flag);
    write_file(dir + "/text" + std::to_string(flag), bytes);
    flag = uint8_t(flag + 37);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  ::mkdir((dir + "/gguf").c_str(), 0755);
  ::mkdir((dir + "/snapshot").c_str(), 0755);
  ::mkdir((dir + "/tokenizer").c_str(), 0755);
  gguf_seeds(dir + "/gguf");
  snapshot_seeds(dir + "/snapshot");
  tokenizer_seeds(dir + "/tokenizer");
  return 0;
}
