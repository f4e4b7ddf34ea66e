// Optional bearer-token authentication: a file of "SHA256(token) tenant" lines maps tokens to
// tenants. Without a file every caller is the default tenant "".
#pragma once

#include <map>
#include <string>

#include "engine/api/status.h"

namespace edgeinf::server {

class Auth {
 public:
  // Empty path: authentication off.
  static StatusOr<Auth> load(const std::string& path);
  bool enabled() const { return enabled_; }
  // The tenant of an "authorization" header value ("Bearer TOKEN"); Unauthenticated otherwise.
  StatusOr<std::string> tenant_of(const std::string& authorization) const;

 private:
  bool enabled_ = false;
  std::map<std::string, std::string> tenants_;  // sha256 hex -> tenant
};

}  // namespace edgeinf::server
