// UTF-8 <-> code points. Prompts arrive as UTF-8; the tokenizers' rules are defined on code points.
#pragma once

#include <string>
#include <string_view>

namespace paradit::text {

// Decodes strict UTF-8 (no overlong forms, surrogates or values past U+10FFFF). Throws kInvalidArgument naming
// `what` and the byte offset otherwise: Python strings, which the reference tokenizers take, cannot hold such
// bytes, so there is no reference behaviour to copy.
std::u32string utf8_decode(std::string_view bytes, std::string_view what);

void utf8_append(std::string& out, char32_t c);
std::string utf8_encode(std::u32string_view s);

}  // namespace paradit::text
