// The .ref files the Python reference writes (tests/reference/make_golden.py documents the
// format): tokens, the reference's argmax and top-2 margin at every position, logit rows.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace edgeinf::testing {

struct Reference {
  std::vector<int32_t> tokens, top1, gen;
  std::vector<float> margin;
  std::vector<uint32_t> logit_positions;
  std::vector<float> logits;  // [n_logit_rows, n_vocab]
  uint32_t n_vocab = 0;
};

template <typename T>
inline bool read_vec(std::ifstream& in, std::vector<T>& v, size_t n) {
  v.resize(n);
  return bool(in.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * sizeof(T))));
}

inline bool read_reference(const std::string& path, Reference* r) {
  std::ifstream in(path, std::ios::binary);
  char magic[8];
  uint32_t hdr[4];
  if (!in.read(magic, 8) || std::memcmp(magic, "EIREF001", 8) != 0) return false;
  if (!in.read(reinterpret_cast<char*>(hdr), sizeof hdr)) return false;
  r->n_vocab = hdr[1];
  return read_vec(in, r->tokens, hdr[0]) && read_vec(in, r->top1, hdr[0]) && read_vec(in, r->margin, hdr[0]) &&
         read_vec(in, r->logit_positions, hdr[2]) && read_vec(in, r->logits, size_t(hdr[2]) * hdr[1]) &&
         read_vec(in, r->gen, hdr[3]);
}

}  // namespace edgeinf::testing
