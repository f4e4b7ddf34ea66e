// The redis:// session store: snapshots as Redis strings under "edgeinf:session:{key}", shared by
// every replica pointed at the same server, so any replica resumes any session. SET replaces a
// value atomically. Durability is Redis's own (configure AOF with fsync for crash safety).
#pragma once

#include <memory>
#include <string>

#include "engine/session/session_store.h"

namespace edgeinf::server {

// url: redis://HOST:PORT (optionally /DB).
StatusOr<std::unique_ptr<SessionStore>> open_redis_store(const std::string& url);

// dir://PATH or redis://HOST:PORT.
StatusOr<std::unique_ptr<SessionStore>> open_session_store(const std::string& url);

}  // namespace edgeinf::server
