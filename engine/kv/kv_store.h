// Where a KV policy's arrays live, and the few operations a policy runs on them. Each backend has
// its store: the CPU's (cpu_kv_store.cpp, over kernels::cpu) and the CUDA backend's
// (engine/backend/cuda/cuda_kv_store.cpp, over kernels::cuda); each operation is one or two
// kernel calls with the parameters of kv_common.h. Policies hold counters and plans only, so an
// algorithm is written once for every device.
//
// The arrays, per layer: K and V [rows, n_kv_head * head_dim], token-major, in the shape's KV
// type (f32, f16 or q8: kernels/common/kv_rows.h), each key rotated to the RoPE position its row
// was given (an encoded key that moves is decoded, re-rotated and encoded again); with memory,
// EdgeInfinite's M [n_kv_head, d, d] and z [n_kv_head, d]. A store also keeps a batch's scratch:
// the rows that left (pre-RoPE keys and values, read by fold) and the memory's read-out. Pointers
// in a LayerAttention are the backend's (device pointers on a device); positions are given on the
// host.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "engine/kv/kv_policy.h"

namespace edgeinf {

struct KvStoreShape {
  int64_t rows = 0;                  // K/V rows per layer at most
  int64_t segment = 0;               // rows that leave at once at most, and queries per memory read
  bool memory = false;               // M and z per layer, the leaving rows and the read-out
  const MemoryGate* gate = nullptr;  // what blend_memory applies (host; a device store copies it)
  KvType type = KvType::kF32;        // how K/V rows are stored (M, z and the scratch stay f32)
};

// The RoPE positions of a batch, set once per batch: the rows it stores, the rotation that takes
// each leaving row back to its pre-RoPE key (minus its position), and the re-rotation of each row
// that moves down when rows leave (minus the number that left).
struct RowPositions {
  std::span<const int32_t> batch, leaving, rest;
};

class KvStore {
 public:
  virtual ~KvStore() = default;
  virtual const char* device() const = 0;
  // Marks rows [0, n) in use (every store holds all its rows from creation; bytes() counts the
  // rows used so far on the CPU, every row on a device).
  virtual void reserve(int64_t n) = 0;
  // Bytes of one layer's K (or V) row in the store's type.
  virtual size_t row_bytes() const = 0;
  // Bytes of K/V rows and memory allocated now, and with every row.
  virtual size_t bytes() const = 0;
  virtual size_t max_bytes() const = 0;
  virtual size_t memory_bytes() const = 0;

  // The positions stay in the caller's buffer until the batch's last call (a CPU store keeps the
  // spans, a device store copies them).
  virtual void set_positions(const RowPositions& p) = 0;
  // Rotates a.q and a.k to the batch's positions, stores a.k and a.v at row `base` of the layer,
  // and writes to a.out the attention of the batch over rows [0, base + a.n_tok) (causal in it).
  virtual void rotate_store_attend(const LayerAttention& a, int64_t base, kernels::cpu::ThreadPool& pool) = 0;
  // Rows [first, first + n) of the layer leave: with `keep`, first to the leaving rows (keys
  // un-rotated by the leaving positions); rows [first + n, end) move down by n, their keys
  // re-rotated by the rest positions.
  virtual void evict(int layer, int64_t first, int64_t n, int64_t end, bool keep, kernels::cpu::ThreadPool& pool) = 0;
  // Folds the first n leaving rows into the layer's memory (the delta rule, or the linear one).
  virtual void fold(int layer, int64_t n, bool delta, kernels::cpu::ThreadPool& pool) = 0;
  // Reads the layer's memory for n_tok pre-RoPE queries q [n_tok, n_head * head_dim] into the
  // read-out, and mixes the read-out into a.out through the gate.
  virtual void read_memory(int layer, const float* q, int64_t n_tok, kernels::cpu::ThreadPool& pool) = 0;
  virtual void blend_memory(const LayerAttention& a, kernels::cpu::ThreadPool& pool) = 0;
  // Zeroes the memory and forgets a device error.
  virtual void reset() = 0;

  // Snapshots: rows [first, last) of every layer (layer by layer, K then V, row_bytes() each), and
  // the memory (layer by layer, M then z). save fails only when the arrays cannot be read (a device
  // error).
  virtual Status save_rows(ByteWriter& w, int64_t first, int64_t last) const = 0;
  virtual Status load_rows(ByteReader& r, int64_t first, int64_t last) = 0;
  virtual Status save_memory(ByteWriter& w) const = 0;
  virtual Status load_memory(ByteReader& r) = 0;

  // The first device error since reset (always OK on the CPU).
  virtual Status error() const = 0;
  // The scratch on the host (a CPU store; nullptr on a device): the leaving rows' pre-RoPE keys
  // and values, and the memory's read-out [segment, n_head * head_dim].
  virtual const float* host_leaving_keys() const { return nullptr; }
  virtual const float* host_leaving_values() const { return nullptr; }
  virtual const float* host_memory_read() const { return nullptr; }
  // The queries the last read_memory used when the gate projects them [segment, q_dim] (a CPU
  // store; nullptr on a device or without a projection).
  virtual const float* host_memory_queries() const { return nullptr; }
};

std::unique_ptr<KvStore> make_cpu_kv_store(const AttentionShape& s, const KvStoreShape& shape);
// The CPU's maker for the shape of a model.
KvStoreMaker cpu_kv_store_maker(const AttentionShape& s);

}  // namespace edgeinf
