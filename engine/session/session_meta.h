// What a session keeps besides its attention state (the snapshot's session section), its store
// key, and the names clients see (ids, etags).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/util/status.h"
#include "engine/util/token_id.h"

namespace edgeinf {

inline constexpr size_t kRecentTokens = 256;  // history kept for the repetition penalty

struct SessionMeta {
  std::string id, tenant;
  int64_t create_time = 0, update_time = 0;  // unix seconds
  uint64_t version = 0;                      // the store version this metadata was committed as
  TokenId pending = -1;                      // the last sampled token, not yet in the attention state
  std::vector<TokenId> recent;               // the last kRecentTokens tokens
  // Counts as of the commit, readable from a record's head alone: tokens in the conversation
  // (pending included), held exactly, folded into memory, evicted; bytes of attention state.
  int64_t total = 0, exact = 0, compressed = 0, dropped = 0, state_bytes = 0;
  uint64_t commit_token = 0;  // random per commit
};

std::string encode_meta(const SessionMeta& m);
// DataLoss when the bytes are not session metadata.
Status decode_meta(std::string_view bytes, SessionMeta* m);

// A new session id: 32 lowercase hex digits from the system's random source.
std::string random_session_id();
bool valid_session_id(std::string_view id);
// The store key of a tenant's session: the tenant's hash scopes it, so no tenant reaches another's.
std::string session_key(const std::string& tenant, const std::string& id);
// The etag of a session version, as clients see it.
std::string etag_of(uint64_t version);
// An id or other client-given name shortened for error messages (at most 64 characters).
std::string quoted_name(std::string_view name);

}  // namespace edgeinf
