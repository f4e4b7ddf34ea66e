// The session snapshot format: versioned, little-endian, checksummed per section.
//
//   "EDGEINFS"                     8 bytes, magic
//   u32 format version             kSnapshotVersion
//   u32 section count
//   per section: u32 id, u64 size, u32 crc32c of its bytes
//   the sections' bytes, in table order
//
// Sections, in this order: kHeader (model fingerprint, KV policy and shape, gate identity, KV type),
// kSession (the caller's session metadata, opaque here), then either kPolicy (KvPolicy::save: the
// whole state, a full snapshot) or kPolicyDelta (KvPolicy::save_delta: the changes since the
// snapshot before it, a delta record). A header and metadata come first so that a prefix of a
// record (its head) describes the session. A snapshot from another model, policy shape or gate is
// refused with FailedPrecondition naming the difference; a truncated or corrupted one with
// DataLoss. Nothing is read before its checksum is verified.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "engine/kv/kv_policy.h"

namespace edgeinf {

// Version 2 added the KV type to the header; version 1 snapshots (f32 entries) still load.
inline constexpr uint32_t kSnapshotVersion = 2;
inline constexpr uint32_t kOldestSnapshotVersion = 1;

// What must match for a snapshot's state to be usable.
struct SnapshotHeader {
  std::string model_fingerprint;
  KvPolicyOptions kv;   // name and shape (the gate pointer is not stored)
  std::string gate_id;  // "" when the policy reads no gate
};

// Serialises header, session metadata and the policy's whole state: a full snapshot.
StatusOr<std::string> write_snapshot(const SnapshotHeader& header, std::string_view session_meta,
                                     const KvPolicy& policy);
// A delta record: header, session metadata and the policy's changes since its mark_saved();
// nullopt when the policy gives none (then write a full snapshot).
std::optional<std::string> write_snapshot_delta(const SnapshotHeader& header, std::string_view session_meta,
                                                const KvPolicy& policy);

struct SnapshotView {
  SnapshotHeader header;
  std::string_view session_meta;
  std::string_view policy_state;  // a full snapshot's state, else empty
  std::string_view policy_delta;  // a delta record's changes, else empty
  bool is_delta = false;
};

// Parses and verifies a full snapshot or a delta record (magic, version, section table,
// checksums, header fields); the views point into `bytes`.
StatusOr<SnapshotView> read_snapshot(std::string_view bytes);

// Like read_snapshot, from the first bytes of a record only: verifies and returns the header
// and session metadata (the policy views stay empty). DataLoss when the bytes end before those
// two sections do.
StatusOr<SnapshotView> read_snapshot_head(std::string_view bytes);

// The head of a record that read_snapshot accepted: its bytes up to the end of the metadata.
std::string_view snapshot_head(std::string_view bytes);

// FailedPrecondition unless `found` describes the same model, policy shape and gate as `want`.
Status check_compatible(const SnapshotHeader& want, const SnapshotHeader& found);

}  // namespace edgeinf
