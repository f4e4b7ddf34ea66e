// The CPU kernels' scratch: one set of buffers per thread, which a kernel grows to what a call
// needs and never shrinks. reserve_scratch sizes every thread's set for the largest shapes a
// context will run, when the context is created, so its steps allocate nothing.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/thread_pool.h"

namespace edgeinf::kernels::cpu {

// Blocking of the kernels that use scratch (attention: queries per task of an f32 cache, query
// rows (heads x queries) per task of an encoded one, keys decoded at once and keys per task of a
// single block of queries over an encoded cache; matmul: weight rows decoded at once).
constexpr int64_t kAttentionQueryBlock = 16;
constexpr int64_t kAttentionEncodedRows = 24;
constexpr int64_t kAttentionKeyTile = 64;
constexpr int64_t kAttentionDecodeChunk = 1024;
constexpr int64_t kMatmulPanelRows = 16;

// The largest shapes one context's steps run.
struct ScratchShape {
  int64_t keys = 0;      // keys one attention call reads
  int64_t heads = 0;     // query heads of attention
  int64_t head_dim = 0;  // of attention and of the memory
  int64_t n_rot = 0;     // rotated values per head
  int64_t n_in = 0;      // the widest input row of a matmul
  int64_t folded = 0;    // rows folded into the memory at once
};

// Grows the scratch of every thread of the pool, the caller's included, to hold shape.
void reserve_scratch(const ScratchShape& shape, ThreadPool& pool);

// The calling thread's buffers (for the kernels in this folder).
struct ThreadScratch {
  std::vector<float> scores, tile, partial;            // attention
  std::vector<float> merge;                            // attention's chunked partial sums
  std::vector<float> rope;                             // cos/sin of one token
  std::vector<float> panel;                            // decoded weight rows
  std::vector<float> row;                              // one decoded row (dot_row of a plain type)
  std::vector<float> fold_keys, fold_read, fold_diff;  // memory fold
  std::vector<float> read_query;                       // memory read
};
ThreadScratch& thread_scratch();

// v's data, grown to at least n values (out of line: the AVX2 kernels call it too).
float* fit(std::vector<float>& v, int64_t n);

}  // namespace edgeinf::kernels::cpu
