// The one table of KV policies: adding a policy is a new file and a line here.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/kv/kv_policy.h"

namespace edgeinf {

std::unique_ptr<KvPolicy> make_full_policy(const KvPolicyOptions& o, const AttentionShape& s);
std::unique_ptr<KvPolicy> make_streaming_policy(const KvPolicyOptions& o, const AttentionShape& s);
std::unique_ptr<KvPolicy> make_edgeinfinite_policy(const KvPolicyOptions& o, const AttentionShape& s);
std::unique_ptr<KvPolicy> make_snapkv_policy(const KvPolicyOptions& o, const AttentionShape& s);
std::unique_ptr<KvPolicy> make_pyramidkv_policy(const KvPolicyOptions& o, const AttentionShape& s);

namespace {

struct Entry {
  const char* name;
  std::unique_ptr<KvPolicy> (*make)(const KvPolicyOptions&, const AttentionShape&);
  bool uses_window;  // validates sink/window/segment
};

constexpr Entry kPolicies[] = {
    {"full", make_full_policy, false},
    {"streaming", make_streaming_policy, true},
    {"edgeinfinite", make_edgeinfinite_policy, true},
    {"snapkv", make_snapkv_policy, false},
    {"pyramidkv", make_pyramidkv_policy, false},
};

}  // namespace

std::vector<std::string> kv_policy_names() {
  std::vector<std::string> names;
  for (const Entry& e : kPolicies) names.emplace_back(e.name);
  return names;
}

namespace {

const Entry* find_policy(const std::string& name) {
  for (const Entry& e : kPolicies) {
    if (name == e.name) return &e;
  }
  return nullptr;
}

}  // namespace

Status validate_kv_options(const KvPolicyOptions& o, const AttentionShape& s) {
  const Entry* entry = find_policy(o.name);
  if (entry == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown KV policy '", o.name, "' (", absl::StrJoin(kv_policy_names(), ", "), ")"));
  }
  if (o.n_ctx < 0) return absl::InvalidArgumentError("context size must be >= 0");
  if (o.name == "snapkv" || o.name == "pyramidkv") {
    const int64_t budget = o.budget > 0 ? o.budget : int64_t(o.sink) + o.window;
    if (o.obs_window <= 0 || o.pool_kernel <= 0 || o.segment <= 0 || budget <= 2 * int64_t(o.obs_window) ||
        !(o.pyramid_beta > 1)) {
      return absl::InvalidArgumentError(
          "snapkv/pyramidkv need budget > 2 x observation window, a positive pool kernel and segment, beta > 1");
    }
  }
  if (entry->uses_window) {
    if (o.sink < 0 || o.window < 0 || o.segment <= 0) {
      return absl::InvalidArgumentError("sink and window must be >= 0 and segment > 0");
    }
    // Positions inside the cache run up to S + W + L: keep them within the trained context.
    if (int64_t(o.sink) + o.window + o.segment > s.n_ctx_train) {
      return absl::InvalidArgumentError(absl::StrCat("sink + window + segment = ", int64_t(o.sink) + o.window + o.segment,
                                                     " exceeds the model's trained context of ", s.n_ctx_train));
    }
  }
  return absl::OkStatus();
}

StatusOr<std::unique_ptr<KvPolicy>> make_kv_policy(const KvPolicyOptions& o, const AttentionShape& s) {
  EDGEINF_RETURN_IF_ERROR(validate_kv_options(o, s));
  return find_policy(o.name)->make(o, s);
}

}  // namespace edgeinf
