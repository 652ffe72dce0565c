// Thin, exception-free wrappers over ICU converters (ucnv) for the charset code: decode bytes to
// UTF-8 with every illegal or unmapped sequence replaced by U+FFFD and counted, and encode UTF-8
// strictly (fail on the first unmappable character, no "best fit" fallbacks).
// Invariants: output is always valid UTF-8; work is linear in the input (chunked, no int32 limits);
// converter names are passed through a character allow-list before ICU sees them.
// Threading: every call opens its own converter; safe from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mukai::sanitize::detail {

// Converter names we are willing to hand to ICU or iconv: letters, digits and - _ . : + ( ), at
// most 64. This keeps out paths ('/'), iconv's "//TRANSLIT"-style suffixes and ICU's ",option"
// syntax, all of which would let a label in a message choose converter behaviour.
bool is_plausible_converter_name(std::string_view name) noexcept;

// Decodes `bytes` with the ICU converter `icu_name` and appends UTF-8 to `out`. Returns the number
// of replaced sequences, or nullopt (and appends nothing) when ICU has no such converter.
std::optional<std::size_t> icu_decode_append(std::string_view icu_name, std::string_view bytes,
                                             std::string& out);

// Strict encode of valid UTF-8 into `icu_name`. nullopt if the converter is unknown or any
// character has no exact (round-trip) mapping.
std::optional<std::string> icu_encode_strict(std::string_view icu_name, std::string_view utf8);

// True if ICU can open a converter for `name`.
bool icu_has_converter(std::string_view name);

struct converter_props {
  int max_char_size = 0;           // bytes per character at most (1 = single-byte table)
  bool ascii_transparent = false;  // printable ASCII, TAB, CR and LF decode to themselves
};
std::optional<converter_props> icu_converter_props(std::string_view name);

// ICU's preferred MIME (else IANA) name for an alias, as ICU spells it; "" if it has none.
std::string icu_standard_name(std::string_view name);

// glibc iconv fallback for the few labels ICU's data lacks (iso-8859-16, viscii, ...). Same
// contract as icu_decode_append: invalid bytes become U+FFFD one byte at a time.
std::optional<std::size_t> iconv_decode_append(std::string_view iconv_name, std::string_view bytes,
                                               std::string& out);
bool iconv_has_converter(std::string_view name);

}  // namespace mukai::sanitize::detail
