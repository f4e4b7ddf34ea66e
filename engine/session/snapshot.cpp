#include "engine/session/snapshot.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/util/crc32c.h"

namespace edgeinf {
namespace {

constexpr char kMagic[8] = {'E', 'D', 'G', 'E', 'I', 'N', 'F', 'S'};
enum SectionId : uint32_t { kHeader = 1, kSession = 2, kPolicy = 3, kPolicyDelta = 4 };
constexpr uint32_t kMaxSections = 16;

void write_header(const SnapshotHeader& h, ByteWriter& w) {
  w.put_string(h.model_fingerprint);
  w.put_string(h.kv.name);
  w.put<int32_t>(h.kv.n_ctx);
  w.put<int32_t>(h.kv.sink);
  w.put<int32_t>(h.kv.window);
  w.put<int32_t>(h.kv.segment);
  w.put<int32_t>(h.kv.budget);
  w.put<int32_t>(h.kv.obs_window);
  w.put<int32_t>(h.kv.pool_kernel);
  w.put<float>(h.kv.pyramid_beta);
  w.put<uint8_t>(h.kv.update == MemoryUpdate::kDelta ? 1 : 0);
  w.put_string(h.gate_id);
  w.put_string(kv_type_name(h.kv.kv_type));
}

// Version 1 headers end with the gate: their KV entries are f32.
Status read_header(ByteReader& r, uint32_t version, SnapshotHeader* h) {
  EDGEINF_RETURN_IF_ERROR(r.get_string(&h->model_fingerprint, 256));
  EDGEINF_RETURN_IF_ERROR(r.get_string(&h->kv.name, 64));
  EDGEINF_RETURN_IF_ERROR(r.get(&h->kv.n_ctx));
  EDGEINF_RETURN_IF_ERROR(r.get(&h->kv.sink));
  EDGEINF_RETURN_IF_ERROR(r.get(&h->kv.window));
  EDGEINF_RETURN_IF_ERROR(r.get(&h->kv.segment));
  EDGEINF_RETURN_IF_ERROR(r.get(&h->kv.budget));
  EDGEINF_RETURN_IF_ERROR(r.get(&h->kv.obs_window));
  EDGEINF_RETURN_IF_ERROR(r.get(&h->kv.pool_kernel));
  EDGEINF_RETURN_IF_ERROR(r.get(&h->kv.pyramid_beta));
  uint8_t delta = 0;
  EDGEINF_RETURN_IF_ERROR(r.get(&delta));
  h->kv.update = delta ? MemoryUpdate::kDelta : MemoryUpdate::kLinear;
  EDGEINF_RETURN_IF_ERROR(r.get_string(&h->gate_id, 256));
  h->kv.kv_type = KvType::kF32;
  if (version < 2) return absl::OkStatus();
  std::string type;
  EDGEINF_RETURN_IF_ERROR(r.get_string(&type, 16));
  StatusOr<KvType> t = parse_kv_type(type);
  if (!t.ok()) return absl::FailedPreconditionError(absl::StrCat("session snapshot: ", t.status().message()));
  h->kv.kv_type = *t;
  return absl::OkStatus();
}

// Writes a record into one buffer: the table first with room for the checksums, the sections
// straight after it (the policy writes its state in place: no second copy of a large state),
// then the checksums. write_state returns false to abandon the record: then the result is empty
// (a record never is).
template <typename WriteState>
StatusOr<std::string> assemble(const SnapshotHeader& header, std::string_view session_meta, uint32_t state_id,
                               size_t state_estimate, WriteState&& write_state) {
  constexpr size_t kTable = 8 + 4 + 4 + 3 * (4 + 8 + 4);
  std::string out;
  out.reserve(kTable + 1024 + session_meta.size() + state_estimate);  // no regrowth (and copy) on the way
  out.resize(kTable);
  ByteWriter w(&out);
  size_t bounds[4];
  bounds[0] = out.size();
  write_header(header, w);
  bounds[1] = out.size();
  out.append(session_meta.data(), session_meta.size());
  bounds[2] = out.size();
  EDGEINF_ASSIGN_OR_RETURN(const bool written, write_state(w));
  if (!written) return std::string();
  bounds[3] = out.size();
  std::string table;
  ByteWriter tw(&table);
  tw.put_array(kMagic, sizeof kMagic);
  tw.put<uint32_t>(kSnapshotVersion);
  tw.put<uint32_t>(3);
  const uint32_t ids[] = {kHeader, kSession, state_id};
  for (int i = 0; i < 3; ++i) {
    tw.put<uint32_t>(ids[i]);
    tw.put<uint64_t>(bounds[i + 1] - bounds[i]);
    tw.put<uint32_t>(crc32c(out.data() + bounds[i], bounds[i + 1] - bounds[i]));
  }
  EDGEINF_CHECK(table.size() == kTable);
  out.replace(0, kTable, table);
  return out;
}

}  // namespace

StatusOr<std::string> write_snapshot(const SnapshotHeader& header, std::string_view session_meta,
                                     const KvPolicy& policy) {
  return assemble(header, session_meta, kPolicy, policy.state_bytes() + 4096, [&](ByteWriter& w) -> StatusOr<bool> {
    EDGEINF_RETURN_IF_ERROR(policy.save(w));
    return true;
  });
}

std::optional<std::string> write_snapshot_delta(const SnapshotHeader& header, std::string_view session_meta,
                                                const KvPolicy& policy) {
  auto out = assemble(header, session_meta, kPolicyDelta, 0,
                      [&](ByteWriter& w) -> StatusOr<bool> { return policy.save_delta(w); });
  if (!out.ok() || out->empty()) return std::nullopt;
  return std::move(*out);
}

namespace {

StatusOr<SnapshotView> parse(std::string_view bytes, bool head_only) {
  ByteReader r(bytes, "session snapshot");
  char magic[8];
  EDGEINF_RETURN_IF_ERROR(r.get_array(magic, sizeof magic));
  if (std::string_view(magic, 8) != std::string_view(kMagic, 8)) {
    return absl::DataLossError("session snapshot: bad magic (not a snapshot)");
  }
  uint32_t version = 0, n_sections = 0;
  EDGEINF_RETURN_IF_ERROR(r.get(&version));
  if (version < kOldestSnapshotVersion || version > kSnapshotVersion) {
    return absl::FailedPreconditionError(absl::StrCat("session snapshot: format version ", version,
                                                      ", this server reads versions ", kOldestSnapshotVersion, " to ",
                                                      kSnapshotVersion));
  }
  EDGEINF_RETURN_IF_ERROR(r.get(&n_sections));
  if (n_sections == 0 || n_sections > kMaxSections) {
    return absl::DataLossError(absl::StrCat("session snapshot: bad section count ", n_sections));
  }
  struct Entry {
    uint32_t id;
    uint64_t size;
    uint32_t crc;
  };
  std::vector<Entry> table(n_sections);
  for (Entry& e : table) {
    EDGEINF_RETURN_IF_ERROR(r.get(&e.id));
    EDGEINF_RETURN_IF_ERROR(r.get(&e.size));
    EDGEINF_RETURN_IF_ERROR(r.get(&e.crc));
  }
  size_t pos = bytes.size() - r.remaining();
  SnapshotView view;
  bool seen[5] = {false, false, false, false, false};
  for (const Entry& e : table) {
    if (head_only && seen[kHeader] && seen[kSession]) return view;
    if (e.size > bytes.size() - pos) {
      return absl::DataLossError(absl::StrCat("session snapshot: truncated (section ", e.id, " needs ", e.size,
                                              " bytes, ", bytes.size() - pos, " left)"));
    }
    const std::string_view data = bytes.substr(pos, size_t(e.size));
    pos += size_t(e.size);
    if (crc32c(data.data(), data.size()) != e.crc) {
      return absl::DataLossError(absl::StrCat("session snapshot: checksum mismatch in section ", e.id));
    }
    if (e.id >= 1 && e.id <= 4) {
      if (seen[e.id]) return absl::DataLossError(absl::StrCat("session snapshot: section ", e.id, " twice"));
      seen[e.id] = true;
    }
    if (e.id == kHeader) {
      ByteReader hr(data, "session snapshot header");
      EDGEINF_RETURN_IF_ERROR(read_header(hr, version, &view.header));
    } else if (e.id == kSession) {
      view.session_meta = data;
    } else if (e.id == kPolicy) {
      view.policy_state = data;
    } else if (e.id == kPolicyDelta) {
      view.policy_delta = data;
      view.is_delta = true;
    }  // unknown sections from a newer minor writer are skipped
  }
  if (pos != bytes.size()) return absl::DataLossError("session snapshot: trailing bytes after the last section");
  if (!seen[kHeader] || !seen[kSession] || seen[kPolicy] == seen[kPolicyDelta]) {
    return absl::DataLossError("session snapshot: a required section is missing");
  }
  return view;
}

}  // namespace

StatusOr<SnapshotView> read_snapshot(std::string_view bytes) { return parse(bytes, false); }
StatusOr<SnapshotView> read_snapshot_head(std::string_view bytes) { return parse(bytes, true); }

std::string_view snapshot_head(std::string_view bytes) {
  // Magic, version, count, the table, then the header and metadata sections (the first two).
  constexpr size_t kEntry = 4 + 8 + 4;
  ByteReader r(bytes, "session snapshot");
  char magic[8];
  uint32_t version = 0, n = 0;
  if (!r.get_array(magic, 8).ok() || !r.get(&version).ok() || !r.get(&n).ok() || n < 2 || n > kMaxSections) {
    return bytes;
  }
  size_t end = 16 + size_t(n) * kEntry;
  for (uint32_t i = 0; i < 2; ++i) {
    uint32_t id = 0, crc = 0;
    uint64_t size = 0;
    if (!r.get(&id).ok() || !r.get(&size).ok() || !r.get(&crc).ok() || size > bytes.size()) return bytes;
    end += size_t(size);
  }
  return bytes.substr(0, std::min(end, bytes.size()));
}

Status check_compatible(const SnapshotHeader& want, const SnapshotHeader& found) {
  auto differ = [](const std::string& what, const auto& a, const auto& b) {
    return absl::FailedPreconditionError(
        absl::StrCat("session snapshot was made with ", what, " ", b, "; this server uses ", a));
  };
  if (want.model_fingerprint != found.model_fingerprint) {
    return differ("model", want.model_fingerprint, found.model_fingerprint);
  }
  if (want.kv.name != found.kv.name) return differ("policy", want.kv.name, found.kv.name);
  if (want.gate_id != found.gate_id) {
    return differ("memory gate", want.gate_id.empty() ? "none" : want.gate_id,
                  found.gate_id.empty() ? "none" : found.gate_id);
  }
  // Shape fields are checked again, field by field, when the policy restores its state.
  return absl::OkStatus();
}

}  // namespace edgeinf
