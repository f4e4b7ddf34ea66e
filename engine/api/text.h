// Names and text a service checks before they reach the engine. The functions are the engine's
// own (session_meta, unicode, sha256), declared here for the service.
#pragma once

#include <string>
#include <string_view>

namespace edgeinf {

// Whether the bytes are well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool valid_utf8(std::string_view text);
// Whether the id has the form of a session id the engine makes (32 lowercase hex digits).
bool valid_session_id(std::string_view id);
// A client-given name shortened and quoted for an error message (at most 64 characters).
std::string quoted_name(std::string_view name);
// Lowercase hex SHA-256 of the bytes (bearer tokens are kept and compared as their hashes).
std::string sha256_hex(std::string_view data);

}  // namespace edgeinf
