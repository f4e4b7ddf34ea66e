// Session stores by URL: dir://PATH (engine/session) and redis://HOST:PORT[/DB], the store that
// replicas share so that any replica resumes any session (see redis_store.cpp for its layout).
// Durability is Redis's own: configure AOF with fsync for crash safety.
#pragma once

#include <memory>
#include <string>

#include "engine/api/session_store.h"

namespace edgeinf::server {

// url: redis://HOST:PORT (optionally /DB). Every call gives up after timeout_ms (UNAVAILABLE).
// Fails unless the server answers a PING.
StatusOr<std::unique_ptr<SessionStore>> open_redis_store(const std::string& url, int timeout_ms);

// A store URL checked for its form, with nothing opened or created yet.
struct StoreUrl {
  std::string scheme;  // "dir" or "redis"
  std::string path;    // dir: the directory, made absolute
  std::string url;     // as the store reports it
};
StatusOr<StoreUrl> parse_store_url(const std::string& url);

// Opens (dir: creates) the store.
StatusOr<std::unique_ptr<SessionStore>> open_session_store(const StoreUrl& url, int timeout_ms);

}  // namespace edgeinf::server
