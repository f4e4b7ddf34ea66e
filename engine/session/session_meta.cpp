// The session metadata codec and the names of sessions.
#include "engine/session/session_meta.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "engine/util/bytes.h"
#include "engine/util/sha256.h"

namespace edgeinf {

// Format: id, tenant, create and update time, version, pending token, recent tokens, the five
// counts; then (added later, absent in older records) the commit token.
std::string encode_meta(const SessionMeta& m) {
  std::string out;
  ByteWriter w(&out);
  w.put_string(m.id);
  w.put_string(m.tenant);
  w.put<int64_t>(m.create_time);
  w.put<int64_t>(m.update_time);
  w.put<uint64_t>(m.version);
  w.put<int32_t>(m.pending);
  w.put<uint32_t>(uint32_t(m.recent.size()));
  w.put_array(m.recent.data(), m.recent.size());
  for (int64_t v : {m.total, m.exact, m.compressed, m.dropped, m.state_bytes}) w.put<int64_t>(v);
  w.put<uint64_t>(m.commit_token);
  return out;
}

Status decode_meta(std::string_view bytes, SessionMeta* m) {
  ByteReader r(bytes, "session metadata");
  EDGEINF_RETURN_IF_ERROR(r.get_string(&m->id, 128));
  EDGEINF_RETURN_IF_ERROR(r.get_string(&m->tenant, 1024));
  EDGEINF_RETURN_IF_ERROR(r.get(&m->create_time));
  EDGEINF_RETURN_IF_ERROR(r.get(&m->update_time));
  EDGEINF_RETURN_IF_ERROR(r.get(&m->version));
  EDGEINF_RETURN_IF_ERROR(r.get(&m->pending));
  uint32_t n = 0;
  EDGEINF_RETURN_IF_ERROR(r.get(&n));
  if (n > kRecentTokens) return absl::DataLossError("session metadata: too many recent tokens");
  m->recent.resize(n);
  EDGEINF_RETURN_IF_ERROR(r.get_array(m->recent.data(), n));
  for (int64_t* v : {&m->total, &m->exact, &m->compressed, &m->dropped, &m->state_bytes}) {
    EDGEINF_RETURN_IF_ERROR(r.get(v));
  }
  m->commit_token = 0;
  if (r.remaining() >= sizeof(uint64_t)) EDGEINF_RETURN_IF_ERROR(r.get(&m->commit_token));
  return absl::OkStatus();
}

std::string random_session_id() {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&out, absl::Hex(rd(), absl::kZeroPad8));
  return out;
}

bool valid_session_id(std::string_view id) {
  if (id.size() != 32) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string session_key(const std::string& tenant, const std::string& id) {
  return absl::StrCat(sha256_hex(tenant).substr(0, 16), "/", id);
}

std::string etag_of(uint64_t version) { return absl::StrCat(absl::Hex(version)); }

std::string quoted_name(std::string_view name) {
  constexpr size_t kMax = 64;
  std::string out = "'";
  for (char c : name.substr(0, kMax))
    out += (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) ? '?' : c;
  out += name.size() > kMax ? absl::StrCat("...' (", name.size(), " bytes)") : "'";
  return out;
}

}  // namespace edgeinf
