// The one table of KV policies: adding a policy is a new file and a line here.
#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/kv/kv_policy.h"
#include "engine/kv/kv_store.h"
#include "kernels/common/kv_rows.h"

namespace edgeinf {

StatusOr<std::unique_ptr<KvPolicy>> make_full_policy(const KvPolicyOptions& o, const AttentionShape& s,
                                                     const KvStoreMaker& stores);
StatusOr<std::unique_ptr<KvPolicy>> make_streaming_policy(const KvPolicyOptions& o, const AttentionShape& s,
                                                          const KvStoreMaker& stores);
StatusOr<std::unique_ptr<KvPolicy>> make_edgeinfinite_policy(const KvPolicyOptions& o, const AttentionShape& s,
                                                             const KvStoreMaker& stores);
StatusOr<std::unique_ptr<KvPolicy>> make_snapkv_policy(const KvPolicyOptions& o, const AttentionShape& s,
                                                       const KvStoreMaker& stores);
StatusOr<std::unique_ptr<KvPolicy>> make_pyramidkv_policy(const KvPolicyOptions& o, const AttentionShape& s,
                                                          const KvStoreMaker& stores);

namespace {

// clang-format off
//  name             make                      sink_window selects everything compresses device
constexpr KvPolicyTraits kPolicies[] = {
    {"full",         make_full_policy,         false, false, true,  false, true},
    {"streaming",    make_streaming_policy,    true,  false, false, false, true},
    {"edgeinfinite", make_edgeinfinite_policy, true,  false, false, true,  true},
    {"snapkv",       make_snapkv_policy,       false, true,  false, false, false},
    {"pyramidkv",    make_pyramidkv_policy,    false, true,  false, false, false},
};
// clang-format on

}  // namespace

std::vector<std::string> kv_policy_names(bool (*filter)(const KvPolicyTraits&)) {
  std::vector<std::string> names;
  for (const KvPolicyTraits& e : kPolicies) {
    if (filter == nullptr || filter(e)) names.emplace_back(e.name);
  }
  return names;
}

const KvPolicyTraits* find_kv_policy(std::string_view name) {
  for (const KvPolicyTraits& e : kPolicies) {
    if (name == e.name) return &e;
  }
  return nullptr;
}

Status known_kv_policy(std::string_view name) {
  if (find_kv_policy(name) != nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown KV policy '", std::string(name), "' (", absl::StrJoin(kv_policy_names(), ", "), ")"));
}

const KvPolicyTraits& kv_policy_traits(std::string_view name) {
  const KvPolicyTraits* traits = find_kv_policy(name);
  EDGEINF_CHECK(traits != nullptr);
  return *traits;
}

const MemoryGate* gate_for_policy(const KvPolicyOptions& options, const MemoryGate* gate) {
  const KvPolicyTraits* traits = find_kv_policy(options.name);
  return traits != nullptr && traits->compresses ? gate : nullptr;
}

const char* kv_type_name(KvType type) {
  switch (type) {
    case KvType::kF32: return "f32";
    case KvType::kF16: return "f16";
    case KvType::kQ8_0: return "q8";
    default: return "unsupported";
  }
}

StatusOr<KvType> parse_kv_type(std::string_view name) {
  for (KvType t : {KvType::kF32, KvType::kF16, KvType::kQ8_0}) {
    if (name == kv_type_name(t)) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown KV type '", absl::CHexEscape(std::string(name.substr(0, 32))), "' (f32, f16, q8)"));
}

Status validate_kv_options(const KvPolicyOptions& o, const AttentionShape& s) {
  EDGEINF_RETURN_IF_ERROR(known_kv_policy(o.name));
  const KvPolicyTraits* entry = find_kv_policy(o.name);
  if (o.n_ctx < 0) return absl::InvalidArgumentError("context size must be >= 0");
  if (!kernels::kv_type_supported(o.kv_type)) {
    return absl::InvalidArgumentError(absl::StrCat("KV type ", uint32_t(o.kv_type), " is not f32, f16 or q8"));
  }
  if (s.head_dim % kernels::kv_block_values(o.kv_type) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("the ", kv_type_name(o.kv_type), " KV type stores blocks of ",
                                                   kernels::kv_block_values(o.kv_type),
                                                   " values of a head; this model's heads have ", s.head_dim));
  }
  if (entry->selects) {
    const int64_t budget = o.budget > 0 ? o.budget : int64_t(o.sink) + o.window;
    if (o.obs_window <= 0 || o.pool_kernel <= 0 || o.segment <= 0 || budget <= 2 * int64_t(o.obs_window) ||
        !(o.pyramid_beta > 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat(o.name, " needs budget > 2 x observation window, a positive pool kernel and segment, beta > 1"));
    }
  }
  if (entry->sink_window) {
    if (o.sink < 0 || o.window < 0 || o.segment <= 0) {
      return absl::InvalidArgumentError("sink and window must be >= 0 and segment > 0");
    }
    // Positions inside the cache run up to S + W + L: keep them within the trained context.
    if (int64_t(o.sink) + o.window + o.segment > s.n_ctx_train) {
      return absl::InvalidArgumentError(
          absl::StrCat("sink + window + segment = ", int64_t(o.sink) + o.window + o.segment,
                       " exceeds the model's trained context of ", s.n_ctx_train));
    }
  }
  return absl::OkStatus();
}

StatusOr<std::unique_ptr<KvPolicy>> make_kv_policy(const KvPolicyOptions& o, const AttentionShape& s,
                                                   const KvStoreMaker& stores) {
  EDGEINF_RETURN_IF_ERROR(validate_kv_options(o, s));
  return find_kv_policy(o.name)->make(o, s, stores);
}

StatusOr<std::unique_ptr<KvPolicy>> make_kv_policy(const KvPolicyOptions& o, const AttentionShape& s) {
  return make_kv_policy(o, s, cpu_kv_store_maker(s));
}

}  // namespace edgeinf
