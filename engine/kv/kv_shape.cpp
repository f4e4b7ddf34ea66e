// Resolving S, W, L and the update rule (see kv_shape.h).
#include "engine/kv/kv_shape.h"

#include "absl/strings/str_cat.h"

namespace edgeinf {

StatusOr<std::string> resolve_kv_shape(const KvShapeRequest& given, const MemoryGate* gate, KvPolicyOptions* kv) {
  const GateConfig* g = gate != nullptr ? &gate->config() : nullptr;
  std::string warning;
  auto pick = [&](int want, int trained, int* dst, const char* name) {
    if (want >= 0) {
      *dst = want;
      if (g != nullptr && want != trained) {
        absl::StrAppend(&warning, warning.empty() ? "" : "; ", name, " ", want, " (the gate was trained with ", trained,
                        ")");
      }
    } else if (g != nullptr) {
      *dst = trained;
    }
  };
  pick(given.sink, g ? g->sink : 0, &kv->sink, "sink");
  pick(given.window, g ? g->window : 0, &kv->window, "window");
  pick(given.segment, g ? g->segment : 0, &kv->segment, "segment");
  if (!given.update.empty()) {
    EDGEINF_ASSIGN_OR_RETURN(kv->update, parse_memory_update(given.update));
    if (g != nullptr && kv->update != g->update) {
      absl::StrAppend(&warning, warning.empty() ? "" : "; ", "update ", given.update, " (the gate was trained with ",
                      memory_update_name(g->update), ")");
    }
  } else if (g != nullptr) {
    kv->update = g->update;
  }
  if (!given.kv_type.empty()) {
    EDGEINF_ASSIGN_OR_RETURN(kv->kv_type, parse_kv_type(given.kv_type));
    if (g != nullptr && kv->kv_type != g->kv_type) {
      absl::StrAppend(&warning, warning.empty() ? "" : "; ", "KV type ", given.kv_type, " (the gate was trained with ",
                      kv_type_name(g->kv_type), ")");
    }
  } else if (g != nullptr) {
    kv->kv_type = g->kv_type;
  }
  return warning;
}

}  // namespace edgeinf
