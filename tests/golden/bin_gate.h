// The gates the Python reference draws (policy_ref.Gate.write_bin), read into a MemoryGate.
#pragma once

#include <fstream>
#include <memory>
#include <string>

#include "engine/kv/memory_gate.h"
#include "tests/golden/reference_file.h"

namespace edgeinf::testing {

// A gate of raw parameters (policy_ref.Gate.write_bin): u32 kind (+ 2 with a query projection),
// n_layer, n_head, q_dim, then per layer bias f32[n_head], for linear weight f32[n_head][2 q_dim],
// with a projection query f32[n_head][head_dim][head_dim].
inline std::unique_ptr<MemoryGate> read_bin_gate(const std::string& path, const AttentionShape& shape,
                                                 const GateConfig& base) {
  std::ifstream in(path, std::ios::binary);
  uint32_t hdr[4];
  if (!in.read(reinterpret_cast<char*>(hdr), sizeof hdr)) return nullptr;
  GateConfig c = base;
  if (hdr[0] > 3) return nullptr;
  c.kind = (hdr[0] & 1) != 0 ? GateKind::kLinear : GateKind::kScalar;
  auto gate = std::make_unique<MemoryGate>(c, shape, 0.0f);
  if ((hdr[0] & 2) != 0) gate->add_query_projection();
  if (int(hdr[1]) != gate->n_layer() || int(hdr[2]) != shape.n_head || int64_t(hdr[3]) != shape.q_dim()) return nullptr;
  for (int il = 0; il < gate->n_layer(); ++il) {
    if (!read_vec(in, gate->bias(il), size_t(shape.n_head))) return nullptr;
    if (c.kind == GateKind::kLinear &&
        !read_vec(in, gate->weight(il), size_t(shape.n_head) * 2 * size_t(shape.q_dim()))) {
      return nullptr;
    }
    if (gate->has_query_projection() && !read_vec(in, gate->query(il), gate->query(il).size())) return nullptr;
  }
  return gate;
}

}  // namespace edgeinf::testing
