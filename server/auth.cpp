#include "server/auth.h"

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/api/text.h"

namespace edgeinf::server {

StatusOr<Auth> Auth::load(const std::string& path) {
  Auth a;
  if (path.empty()) return a;
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the token file '", path, "'"));
  a.enabled_ = true;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const std::string t(absl::StripAsciiWhitespace(line));
    if (t.empty() || t[0] == '#') continue;
    std::vector<std::string> parts = absl::StrSplit(t, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (parts.size() != 2 || parts[0].size() != 64) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", n, ": expected 'SHA256-HEX-OF-TOKEN TENANT'"));
    }
    a.tenants_[absl::AsciiStrToLower(parts[0])] = parts[1];
  }
  return a;
}

StatusOr<std::string> Auth::tenant_of(const std::string& authorization) const {
  if (!enabled_) return std::string();
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.compare(0, kBearer.size(), kBearer) != 0) {
    return absl::UnauthenticatedError("missing 'authorization: Bearer TOKEN' metadata");
  }
  auto it = tenants_.find(sha256_hex(authorization.substr(kBearer.size())));
  if (it == tenants_.end()) return absl::UnauthenticatedError("unknown bearer token");
  return it->second;
}

}  // namespace edgeinf::server
