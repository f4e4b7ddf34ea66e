#include "engine/api/text.h"

#include "engine/session/session_meta.h"  // valid_session_id, quoted_name
#include "engine/tokenizer/unicode.h"
#include "engine/util/sha256.h"  // sha256_hex

namespace edgeinf {

bool valid_utf8(std::string_view text) { return unicode::is_valid_utf8(text); }

}  // namespace edgeinf
