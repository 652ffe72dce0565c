// ICU (and, as a fallback, glibc iconv) converter wrappers for the charset code.
// Why a custom ICU callback: ICU's default substitute callback writes the converter's own
// substitution character, which for many Japanese/legacy tables is U+001A (SUB, a control
// character), and it does not tell us how many bytes were bad. We always write U+FFFD and count,
// so "never return mojibake silently" can be enforced by the caller.
// Threading: converters are opened per call and never shared.
#include "sanitizers/charset_icu.hpp"

#include <iconv.h>
#include <unicode/ucnv.h>
#include <unicode/ucnv_cb.h>

#include <array>
#include <cerrno>
#include <memory>

#include "sanitizers/charset_utf8.hpp"

namespace mukai::sanitize::detail {
namespace {

struct converter_closer {
  void operator()(UConverter* c) const noexcept { ucnv_close(c); }
};
using converter_ptr = std::unique_ptr<UConverter, converter_closer>;

converter_ptr open_converter(std::string_view name) {
  if (!is_plausible_converter_name(name)) return {};
  const std::string z(name);
  UErrorCode err = U_ZERO_ERROR;
  UConverter* c = ucnv_open(z.c_str(), &err);
  if (U_FAILURE(err)) {
    if (c != nullptr) ucnv_close(c);
    return {};
  }
  return converter_ptr(c);
}

// ICU to-Unicode callback: U+FFFD for every unassigned, illegal or irregular sequence, counted in
// the std::size_t the context points at. RESET/CLOSE/CLONE notifications are ignored.
void U_CALLCONV replace_and_count(const void* context, UConverterToUnicodeArgs* args, const char* /*units*/,
                                  int32_t /*length*/, UConverterCallbackReason reason,
                                  UErrorCode* err) noexcept {
  if (reason != UCNV_UNASSIGNED && reason != UCNV_ILLEGAL && reason != UCNV_IRREGULAR) return;
  auto* count = static_cast<std::size_t*>(const_cast<void*>(context));
  ++*count;
  *err = U_ZERO_ERROR;
  static constexpr UChar fffd = 0xFFFD;
  ucnv_cbToUWriteUChars(args, &fffd, 1, 0, err);
}

}  // namespace

bool is_plausible_converter_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 64) return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.' || c == ':' || c == '+' || c == '(' || c == ')';
    if (!ok) return false;
  }
  return true;
}

bool icu_has_converter(std::string_view name) { return static_cast<bool>(open_converter(name)); }

std::optional<converter_props> icu_converter_props(std::string_view name) {
  converter_ptr cnv = open_converter(name);
  if (!cnv) return std::nullopt;
  converter_props p;
  p.max_char_size = ucnv_getMaxCharSize(cnv.get());
  std::string probe = "\t\r\n";
  for (char c = 0x20; c < 0x7F; ++c) probe.push_back(c);
  std::string decoded;
  const auto replaced = icu_decode_append(name, probe, decoded);
  p.ascii_transparent = replaced && *replaced == 0 && decoded == probe;
  return p;
}

std::string icu_standard_name(std::string_view name) {
  if (!is_plausible_converter_name(name)) return {};
  const std::string z(name);
  for (const char* standard : {"MIME", "IANA"}) {
    UErrorCode err = U_ZERO_ERROR;
    const char* s = ucnv_getStandardName(z.c_str(), standard, &err);
    if (U_SUCCESS(err) && s != nullptr) return s;
  }
  return {};
}

std::optional<std::size_t> icu_decode_append(std::string_view icu_name, std::string_view bytes,
                                             std::string& out) {
  converter_ptr cnv = open_converter(icu_name);
  if (!cnv) return std::nullopt;
  std::size_t replaced = 0;
  UErrorCode err = U_ZERO_ERROR;
  ucnv_setToUCallBack(cnv.get(), replace_and_count, &replaced, nullptr, nullptr, &err);
  if (U_FAILURE(err)) return std::nullopt;

  out.reserve(out.size() + bytes.size() + bytes.size() / 2);
  utf16_to_utf8_writer writer(out);
  std::array<UChar, 8192> buf{};
  const char* src = bytes.data();
  const char* const src_end = bytes.data() + bytes.size();
  do {
    err = U_ZERO_ERROR;
    UChar* target = buf.data();
    ucnv_toUnicode(cnv.get(), &target, buf.data() + buf.size(), &src, src_end, nullptr, /*flush=*/true, &err);
    writer.write(buf.data(), static_cast<std::size_t>(target - buf.data()));
  } while (err == U_BUFFER_OVERFLOW_ERROR);
  if (U_FAILURE(err)) {
    // Not expected with our callback; never drop the rest silently.
    append_utf8(out, replacement_char);
    ++replaced;
  }
  writer.finish();
  return replaced + writer.lone_surrogates();
}

std::optional<std::string> icu_encode_strict(std::string_view icu_name, std::string_view utf8) {
  converter_ptr cnv = open_converter(icu_name);
  if (!cnv) return std::nullopt;
  std::u16string u16;
  u16.reserve(utf8.size());
  for (std::size_t i = 0; i < utf8.size();) {
    const utf8_step st = next_utf8(utf8, i);
    if (!st.valid) return std::nullopt;
    if (st.cp >= 0x10000) {
      u16.push_back(static_cast<char16_t>(0xD800 + ((st.cp - 0x10000) >> 10)));
      u16.push_back(static_cast<char16_t>(0xDC00 + ((st.cp - 0x10000) & 0x3FF)));
    } else {
      u16.push_back(static_cast<char16_t>(st.cp));
    }
    i += st.length;
  }
  UErrorCode err = U_ZERO_ERROR;
  ucnv_setFromUCallBack(cnv.get(), UCNV_FROM_U_CALLBACK_STOP, nullptr, nullptr, nullptr, &err);
  if (U_FAILURE(err)) return std::nullopt;
  ucnv_setFallback(cnv.get(), false);  // exact mappings only: a "best fit" is a silent change

  std::string out;
  std::array<char, 8192> buf{};
  const UChar* src = u16.data();
  const UChar* const src_end = u16.data() + u16.size();
  do {
    err = U_ZERO_ERROR;
    char* target = buf.data();
    ucnv_fromUnicode(cnv.get(), &target, buf.data() + buf.size(), &src, src_end, nullptr, /*flush=*/true,
                     &err);
    out.append(buf.data(), static_cast<std::size_t>(target - buf.data()));
  } while (err == U_BUFFER_OVERFLOW_ERROR);
  if (U_FAILURE(err)) return std::nullopt;
  return out;
}

namespace {

struct iconv_closer {
  void operator()(void* cd) const noexcept { iconv_close(static_cast<iconv_t>(cd)); }
};

std::unique_ptr<void, iconv_closer> open_iconv(std::string_view name) {
  if (!is_plausible_converter_name(name)) return {};
  const std::string z(name);
  iconv_t cd = iconv_open("UTF-8", z.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) return {};
  return std::unique_ptr<void, iconv_closer>(cd);
}

}  // namespace

bool iconv_has_converter(std::string_view name) { return static_cast<bool>(open_iconv(name)); }

std::optional<std::size_t> iconv_decode_append(std::string_view iconv_name, std::string_view bytes,
                                               std::string& out) {
  auto handle = open_iconv(iconv_name);
  if (!handle) return std::nullopt;
  auto cd = static_cast<iconv_t>(handle.get());
  std::size_t replaced = 0;
  std::string produced;  // re-validated below: we do not take glibc's word for UTF-8 validity
  std::array<char, 8192> buf{};
  // iconv's prototype takes char** for the input although it never writes through it.
  char* in = const_cast<char*>(bytes.data());
  std::size_t in_left = bytes.size();
  while (in_left > 0) {
    char* outp = buf.data();
    std::size_t out_left = buf.size();
    const std::size_t rc = iconv(cd, &in, &in_left, &outp, &out_left);
    produced.append(buf.data(), buf.size() - out_left);
    if (rc != static_cast<std::size_t>(-1)) continue;
    if (errno == E2BIG) continue;
    append_utf8(produced, replacement_char);
    ++replaced;
    if (errno == EILSEQ) {
      ++in;  // skip one byte and resynchronise
      --in_left;
    } else {
      break;  // EINVAL: incomplete sequence at the end of the input
    }
  }
  char* outp = buf.data();
  std::size_t out_left = buf.size();
  iconv(cd, nullptr, nullptr, &outp, &out_left);  // flush shift state
  produced.append(buf.data(), buf.size() - out_left);
  replaced += append_utf8_repaired(out, produced);
  return replaced;
}

}  // namespace mukai::sanitize::detail
