// Names and text a service checks before they reach the engine.
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

}  // namespace edgeinf
