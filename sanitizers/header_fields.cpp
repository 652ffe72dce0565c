// Header field extraction. Every value is bounded (count and length) so that the rebuilt
// header block can always be folded under 998 octets per line.
#include "sanitizers/header_fields.hpp"

#include <algorithm>

#include "sanitizers/ascii.hpp"
#include "sanitizers/display_safe.hpp"
#include "sanitizers/rfc2047.hpp"

namespace mukai::sanitize {

namespace {

constexpr int max_addresses_per_field = 100;
constexpr std::size_t max_references = 30;

using ascii::iequals;
using ascii::lower;
using ascii::trim;

const char* raw_header(GMimeObject* obj, std::string_view name, int* count = nullptr) {
  GMimeHeaderList* list = g_mime_object_get_header_list(obj);
  if (!list) return nullptr;
  const char* first = nullptr;
  int n = g_mime_header_list_get_count(list);
  int seen = 0;
  for (int i = 0; i < n; ++i) {
    GMimeHeader* h = g_mime_header_list_get_header_at(list, i);
    const char* hn = g_mime_header_get_name(h);
    if (hn && iequals(hn, name)) {
      ++seen;
      if (!first) first = g_mime_header_get_raw_value(h);
    }
  }
  if (count) *count = seen;
  return first;
}

bool safe_address(std::string_view addr) {
  if (addr.empty() || addr.size() > 254) return false;
  return std::all_of(addr.begin(), addr.end(), [](char c) { return c > 0x20 && c < 0x7F; });
}

// Decoded header text as it may reach a reader's screen in the output headers: C0, DEL and C1
// controls become spaces; the bidi controls that reorder text (U+202A-E, U+2066-9) are dropped,
// so a Subject or a display name cannot make "invoice<U+202E>fdp.exe" look like "invoiceexe.pdf";
// at most `max` bytes, cut at a character boundary (re-encoded in words, so any length folds:
// the bound is against abuse).
std::string clean_header_text(std::string_view text, std::size_t max) {
  std::string out;
  out.reserve(std::min(text.size(), max));
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto u = static_cast<unsigned char>(text[i]);
    if (u < 0x20 || u == 0x7F) {
      out += ' ';
    } else if (u == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9F) {
      out += ' ';
      ++i;
    } else if (const std::size_t n = bidi_reordering_control_at(text, i)) {
      i += n - 1;
    } else {
      out += text[i];
    }
  }
  if (out.size() > max) {
    std::size_t cut = max;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out.resize(cut);
  }
  return out;
}

std::string clean_name(std::string_view name) { return clean_header_text(name, 300); }

// Keeps mailboxes with an address we can write back 7-bit; drops the rest with a warning.
void filter_addresses(InternetAddressList* list, std::vector<std::string>& warnings, std::string_view field, int depth) {
  for (int i = internet_address_list_length(list) - 1; i >= 0; --i) {
    InternetAddress* ia = internet_address_list_get_address(list, i);
    bool keep = true;
    if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
      keep = safe_address(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)));
    } else if (INTERNET_ADDRESS_IS_GROUP(ia) && depth == 0) {
      filter_addresses(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)), warnings, field, 1);
    } else {
      keep = false;
    }
    if (keep && i >= max_addresses_per_field) keep = false;
    if (!keep) {
      internet_address_list_remove_at(list, i);
      warnings.push_back("address-dropped:" + std::string(field));
      continue;
    }
    if (const char* name = internet_address_get_name(ia)) internet_address_set_name(ia, clean_name(name).c_str());
  }
}

gobject_ptr<InternetAddressList> read_addresses(GMimeObject* obj, std::string_view name, GMimeParserOptions* options,
                                                std::string_view hint, std::vector<std::string>& warnings,
                                                std::string* display) {
  int count = 0;
  const char* raw = raw_header(obj, name, &count);
  if (!raw) return nullptr;
  if (count > 1) warnings.push_back("duplicate-header:" + lower(name));
  std::string normalised = normalize_encoded_words(raw, hint);
  auto list = adopt(internet_address_list_parse(options, normalised.c_str()));
  if (!list) {
    warnings.push_back("unparseable-addresses:" + lower(name));
    if (display) *display = decode_header_text(raw, hint);
    return nullptr;
  }
  filter_addresses(list.get(), warnings, lower(name), 0);
  if (display) {
    gchar_ptr text(internet_address_list_to_string(list.get(), nullptr, FALSE));
    *display = text ? text.get() : "";
  }
  return list;
}

std::vector<std::string> read_references(GMimeObject* obj, std::string_view name, GMimeParserOptions* options,
                                         std::size_t keep_last) {
  std::vector<std::string> out;
  const char* raw = raw_header(obj, name);
  if (!raw) return out;
  references_ptr refs(g_mime_references_parse(options, raw));
  if (!refs) return out;
  int n = g_mime_references_length(refs.get());
  for (int i = 0; i < n; ++i) {
    const char* id = g_mime_references_get_message_id(refs.get(), i);
    if (id && is_safe_message_id(id)) out.emplace_back(id);
  }
  if (out.size() > keep_last) out.erase(out.begin(), out.end() - static_cast<std::ptrdiff_t>(keep_last));
  return out;
}

}  // namespace

bool is_safe_message_id(std::string_view id) {
  if (id.empty() || id.size() > 250) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7F && c != '<' && c != '>'; });
}

header_fields read_header_fields(GMimeMessage* message, GMimeParserOptions* options, std::string_view hint) {
  header_fields f;
  GMimeObject* obj = GMIME_OBJECT(message);
  f.from = read_addresses(obj, "From", options, hint, f.warnings, &f.from_text);
  f.to = read_addresses(obj, "To", options, hint, f.warnings, nullptr);
  f.cc = read_addresses(obj, "Cc", options, hint, f.warnings, nullptr);
  f.reply_to = read_addresses(obj, "Reply-To", options, hint, f.warnings, nullptr);
  int count = 0;
  if (const char* raw = raw_header(obj, "Subject", &count)) {
    f.subject = clean_header_text(decode_header_text(raw, hint), 4000);
    f.subject = trim(f.subject);
    if (count > 1) f.warnings.push_back("duplicate-header:subject");
  }
  if (const char* raw = raw_header(obj, "Date", &count)) {
    std::string value = trim(raw);
    f.date.reset(g_mime_utils_header_decode_date(value.c_str()));
    f.date_text = decode_header_text(value, hint);
    if (!f.date) f.warnings.push_back("unparseable-date");
  }
  if (const char* raw = raw_header(obj, "Message-ID", &count)) {
    gchar_ptr id(g_mime_utils_decode_message_id(raw));
    if (id && is_safe_message_id(id.get())) f.message_id = id.get();
    else f.warnings.push_back("invalid-message-id");
  }
  f.in_reply_to = read_references(obj, "In-Reply-To", options, 5);
  f.references = read_references(obj, "References", options, max_references);
  return f;
}

part_info read_part_info(GMimeObject* part, GMimeParserOptions* options, std::string_view hint) {
  part_info info;
  GMimeContentType* ct = g_mime_object_get_content_type(part);
  if (ct) {
    gchar_ptr type(g_mime_content_type_get_mime_type(ct));
    info.mime_type = type ? lower(type.get()) : "text/plain";
    if (const char* cs = g_mime_content_type_get_parameter(ct, "charset")) info.charset = trim(cs);
    if (const char* st = g_mime_content_type_get_parameter(ct, "smime-type")) info.smime_type = st;
    if (const char* fmt = g_mime_content_type_get_parameter(ct, "format")) info.format_flowed = iequals(trim(fmt), "flowed");
    if (const char* ds = g_mime_content_type_get_parameter(ct, "delsp")) info.delsp = iequals(trim(ds), "yes");
  } else {
    info.mime_type = "text/plain";
  }
  std::string disposition_name, type_name;
  if (const char* raw = raw_header(part, "Content-Disposition")) {
    auto disp = adopt(g_mime_content_disposition_parse(options, normalize_encoded_words(raw, hint).c_str()));
    if (disp) {
      const char* d = g_mime_content_disposition_get_disposition(disp.get());
      info.is_attachment = d && iequals(trim(d), "attachment");
      if (const char* fn = g_mime_content_disposition_get_parameter(disp.get(), "filename"))
        disposition_name = decode_header_text(fn, hint, header_controls::keep);
    }
  }
  if (const char* raw = raw_header(part, "Content-Type")) {
    auto parsed = adopt(g_mime_content_type_parse(options, normalize_encoded_words(raw, hint).c_str()));
    if (parsed) {
      if (const char* n = g_mime_content_type_get_parameter(parsed.get(), "name")) type_name = decode_header_text(n, hint, header_controls::keep);
    }
  }
  info.filename = !disposition_name.empty() ? disposition_name : type_name;
  if (!disposition_name.empty() && !type_name.empty() && type_name != disposition_name) info.name_param = type_name;
  if (const char* raw = raw_header(part, "Content-Transfer-Encoding")) {
    std::string cte = lower(trim(raw));
    static constexpr std::string_view known[] = {"7bit", "8bit", "binary", "base64", "quoted-printable",
                                                 "x-uuencode", "uuencode", "x-uue"};
    info.transfer_encoding_known = std::find(std::begin(known), std::end(known), cte) != std::end(known);
  }
  return info;
}

std::string first_text_charset(GMimeObject* top) {
  // Iterative, bounded: this runs before the walk enforces the depth budget.
  std::vector<GMimeObject*> stack{top};
  int visited = 0;
  while (!stack.empty() && visited++ < 200) {
    GMimeObject* obj = stack.back();
    stack.pop_back();
    if (GMIME_IS_MULTIPART(obj)) {
      GMimeMultipart* mp = GMIME_MULTIPART(obj);
      for (int i = g_mime_multipart_get_count(mp) - 1; i >= 0; --i) stack.push_back(g_mime_multipart_get_part(mp, i));
    } else if (GMIME_IS_PART(obj)) {
      GMimeContentType* ct = g_mime_object_get_content_type(obj);
      if (ct && g_mime_content_type_is_type(ct, "text", "*")) {
        if (const char* cs = g_mime_content_type_get_parameter(ct, "charset")) return trim(cs);
      }
    }
  }
  return {};
}

}  // namespace mukai::sanitize
