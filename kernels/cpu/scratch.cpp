// Per-thread kernel scratch and its sizing on every thread of a pool.
#include "kernels/cpu/scratch.h"

#include <algorithm>

namespace edgeinf::kernels::cpu {

float* fit(std::vector<float>& v, int64_t n) {
  if (v.size() < size_t(n)) v.resize(size_t(n));
  return v.data();
}

ThreadScratch& thread_scratch() {
  thread_local ThreadScratch scratch;
  return scratch;
}

void reserve_scratch(const ScratchShape& s, ThreadPool& pool) {
  pool.run_on_each_thread([&] {
    ThreadScratch& t = thread_scratch();
    fit(t.scores, std::max({kAttentionQueryBlock, kAttentionEncodedRows, s.heads}) * s.keys);
    fit(t.merge, s.heads * kAttentionEncodedRows * ((s.keys + kAttentionDecodeChunk - 1) / kAttentionDecodeChunk) *
                     (s.head_dim + 2));
    fit(t.tile, kAttentionKeyTile * s.head_dim);
    fit(t.partial, s.head_dim);
    fit(t.rope, s.n_rot);
    fit(t.panel, kMatmulPanelRows * s.n_in);
    fit(t.row, std::max(s.n_in, s.head_dim));
    fit(t.fold_keys, s.folded * s.head_dim);
    fit(t.fold_read, s.folded * s.head_dim);
    fit(t.fold_diff, s.head_dim);
    fit(t.read_query, s.head_dim);
  });
}

}  // namespace edgeinf::kernels::cpu
