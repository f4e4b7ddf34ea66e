// Resolving S, W, L, the update rule and the KV type (see kv_shape.h).
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
  // A named setting (update rule, KV type): parsed when given, else the gate's.
  auto pick_named = [&](const std::string& want, auto trained, auto* dst, auto parse, auto name_of,
                        const char* name) -> Status {
    if (!want.empty()) {
      EDGEINF_ASSIGN_OR_RETURN(*dst, parse(want));
      if (g != nullptr && *dst != trained) {
        absl::StrAppend(&warning, warning.empty() ? "" : "; ", name, " ", want, " (the gate was trained with ",
                        name_of(trained), ")");
      }
    } else if (g != nullptr) {
      *dst = trained;
    }
    return absl::OkStatus();
  };
  EDGEINF_RETURN_IF_ERROR(pick_named(given.update, g ? g->update : MemoryUpdate::kDelta, &kv->update,
                                     parse_memory_update, memory_update_name, "update"));
  EDGEINF_RETURN_IF_ERROR(pick_named(
      given.kv_type, g ? g->kv_type : KvType::kF32, &kv->kv_type, [](const std::string& n) { return parse_kv_type(n); },
      kv_type_name, "KV type"));
  return warning;
}

}  // namespace edgeinf
