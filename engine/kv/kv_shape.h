// The shape of a sink/window policy (S, W, L, the memory update rule, the KV type) as a user gives
// it, and its resolution against the gate's training shape and the defaults.
#pragma once

#include <string>

#include "engine/kv/kv_policy.h"
#include "engine/kv/memory_gate.h"
#include "engine/util/status.h"

namespace edgeinf {

// S, W, L, the update rule and the KV type as a command line or request gives them; unset: negative
// or empty.
struct KvShapeRequest {
  int sink = -1;
  int window = -1;
  int segment = -1;
  std::string update;
  std::string kv_type;
};

// The help text of the command lines' --kv-type.
inline constexpr const char* kKvTypeHelp =
    "how KV entries are stored: f32, f16 or q8 (int8, a scale per 32 values) (default: the gate's, else f32)";

// Fills kv's sink, window, segment, update rule and KV type: given values first, else the shape the
// gate was trained for (when there is a gate), else kv's own values. Returns a warning when a given
// value differs from the gate's training shape ("" otherwise); InvalidArgument for an unknown
// update rule or KV type.
StatusOr<std::string> resolve_kv_shape(const KvShapeRequest& given, const MemoryGate* gate, KvPolicyOptions* kv);

}  // namespace edgeinf
