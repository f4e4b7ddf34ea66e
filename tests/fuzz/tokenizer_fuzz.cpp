// libFuzzer target: arbitrary bytes through the real model's tokenizer and the streaming text path.
// The first byte chooses whether control tokens written in the text are parsed and the stop string;
// the rest is the text. Checked on every input:
//   - decode(encode(text)) is the text, byte for byte, with and without special-token parsing, less
//     the bytes the vocabulary has no token for (SmolLM2 lacks 21 of the 256: six C0 controls and
//     bytes that only non-UTF-8 text or code points U+40000..U+BFFFF contain), which the
//     reference tokenizer drops as well;
//   - every id is inside the vocabulary;
//   - the pieces streamed one token at a time through Utf8Stream give what the whole text gives;
//   - StopMatcher never lets a stop string through, and without a match gives the text back whole.
// The model is EDGEINF_MODEL, else the one the build was configured with.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "engine/model/gguf.h"
#include "engine/sampling/stop_matcher.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8_stream.h"

namespace {

// The bytes as a C string literal would write them (the first 300).
std::string escaped(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes.substr(0, 300)) {
    char buf[8];
    std::snprintf(buf, sizeof buf, c >= 0x20 && c < 0x7f && c != '\\' ? "%c" : "\\x%02x", c);
    out += buf;
  }
  return out;
}

[[noreturn]] void fail(const char* what, std::string_view text, std::string_view got) {
  std::fprintf(stderr, "tokenizer_fuzz: %s\n  input: \"%s\"\n  got:   \"%s\"\n", what, escaped(text).c_str(),
               escaped(got).c_str());
  std::abort();
}

const edgeinf::Tokenizer& tokenizer() {
  static const std::unique_ptr<edgeinf::Tokenizer> t = [] {
    const char* env = std::getenv("EDGEINF_MODEL");
    const std::string path = env != nullptr && *env != '\0' ? env : EDGEINF_FUZZ_MODEL_PATH;
    auto file = edgeinf::GgufFile::open(path);
    if (!file.ok()) {
      std::fprintf(stderr, "tokenizer_fuzz: %s: %s\n", path.c_str(), file.status().ToString().c_str());
      std::exit(2);
    }
    auto tok = edgeinf::Tokenizer::from_gguf(**file);
    if (!tok.ok()) {
      std::fprintf(stderr, "tokenizer_fuzz: %s\n", tok.status().ToString().c_str());
      std::exit(2);
    }
    return std::move(*tok);
  }();
  return *t;
}

// The bytes a byte-level vocabulary cannot write: each one alone encodes to nothing.
const std::array<bool, 256>& unwritable() {
  static const std::array<bool, 256> table = [] {
    std::array<bool, 256> t{};
    for (int b = 0; b < 256; ++b) {
      const std::string one(1, char(b));
      t[size_t(b)] = tokenizer().decode(tokenizer().encode(one, false, false)).empty();
    }
    return t;
  }();
  return table;
}

std::string writable(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (!unwritable()[uint8_t(c)]) out += c;
  }
  return out;
}

std::string stream_whole(std::string_view bytes) {
  edgeinf::Utf8Stream s;
  return s.push(bytes) + s.flush();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const edgeinf::Tokenizer& tok = tokenizer();
  const bool special = (data[0] & 1) != 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  const std::vector<edgeinf::TokenId> ids = tok.encode(text, /*add_special=*/false, special);
  for (edgeinf::TokenId id : ids) {
    if (id < 0 || id >= tok.n_vocab()) fail("an id outside the vocabulary", text, std::to_string(id));
  }
  const std::string expected = writable(text);
  if (const std::string back = tok.decode(ids); back != expected) {
    fail("decode(encode(text)) differs from the text", text, back);
  }

  edgeinf::Utf8Stream stream;
  std::string streamed;
  for (edgeinf::TokenId id : ids) streamed += stream.push(tok.token_to_piece(id));
  streamed += stream.flush();
  if (streamed != stream_whole(expected)) fail("the streamed pieces differ from the whole text", text, streamed);

  // A stop string cut from the text itself, its last byte changed when the second bit is set (so
  // that it matches sometimes and sometimes not), with the text fed in token pieces.
  if (expected.empty()) return 0;
  const size_t from = size_t(data[0] >> 2) % expected.size();
  std::string stop = expected.substr(from, 1 + (data[0] >> 5));
  if ((data[0] & 2) != 0) stop.back() = char(stop.back() ^ 0x20);
  edgeinf::StopMatcher matcher({stop});
  std::string out;
  for (edgeinf::TokenId id : ids) {
    if (matcher.stopped()) break;
    out += matcher.push(tok.token_to_piece(id));
  }
  if (!matcher.stopped()) out += matcher.flush();
  const size_t first = expected.find(stop);
  if (first == std::string::npos) {
    if (matcher.stopped() || out != expected) fail("StopMatcher changed text without a stop string", text, out);
  } else if (!matcher.stopped() || out != expected.substr(0, first)) {
    fail("StopMatcher did not end the text just before the first stop string", text, out);
  }
  return 0;
}
