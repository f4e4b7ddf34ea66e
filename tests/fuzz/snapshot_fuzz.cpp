// libFuzzer target: arbitrary bytes as session snapshots (what ImportSession takes from clients and
// a store hands back). The first byte picks the policy and whether the rest is a full snapshot
// (restored into an empty policy) or a delta record (applied to a fixed state of that policy).
// Any crash, sanitizer report or hang is a bug; errors are the expected outcome.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "engine/session/session_meta.h"
#include "tests/fuzz/snapshot_fuzz_shape.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace edgeinf;
  if (size < 1) return 0;
  static const std::vector<std::string> names = kv_policy_names();
  static kernels::cpu::ThreadPool pool(1);
  const std::string& name = names[size_t(data[0] / 2) % names.size()];
  const bool delta = (data[0] & 1) != 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  auto view = read_snapshot(bytes);
  if (!view.ok()) return 0;
  SessionMeta meta;
  (void)decode_meta(view->session_meta, &meta);
  (void)check_compatible(fuzz::header(name), view->header);
  auto p = make_kv_policy(fuzz::options(name), fuzz::shape());
  if (!p.ok()) return 0;
  if (!delta) {
    ByteReader r(view->policy_state, "fuzz state");
    (void)(*p)->restore(r);
  } else {
    const fuzz::SnapshotSeed base = fuzz::make_snapshot_seed(name);
    auto base_view = read_snapshot(base.full);
    if (!base_view.ok()) return 0;
    ByteReader br(base_view->policy_state, "fuzz base");
    if (!(*p)->restore(br).ok()) return 0;
    ByteReader r(view->policy_delta, "fuzz delta");
    (void)(*p)->apply_delta(r, pool);
  }
  // Whatever was restored must be usable: one more token through it.
  fuzz::feed(**p, 1, 3);
  std::string out;
  ByteWriter w(&out);
  (void)(*p)->save(w);
  return 0;
}
