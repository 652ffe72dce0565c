// Output serialisation through GMime with fresh objects only: GMime encodes the headers per
// RFC 2047 and folds them; the body is 7bit (ASCII), quoted-printable or base64 (UTF-8), or
// 7-bit ISO-2022-JP.
// Copies: the body text reaches GMime's encoder in place (a non-owning stream over spec.body or
// the ISO-2022-JP bytes) and the encoder writes straight into the output string, sized up front,
// so a large body is copied once into the output (plus GMime's encoding), not three times.
#include "sanitizers/output_message.hpp"

#include <algorithm>
#include <cstring>

#include "sanitizers/byte_scan.hpp"
#include "sanitizers/charset.hpp"
#include "sanitizers/gobject_ptr.hpp"

namespace mukai::sanitize {

namespace {

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

std::string ids_header(const std::vector<std::string>& ids) {
  std::string out;
  for (auto& id : ids) {
    if (!out.empty()) out += ' ';
    out += "<" + id + ">";
  }
  return out;
}

void copy_addresses(GMimeMessage* msg, GMimeAddressType type, InternetAddressList* from) {
  if (!from || internet_address_list_length(from) == 0) return;
  internet_address_list_append(g_mime_message_get_addresses(msg, type), from);
}

// A write-only GMime stream that appends to a std::string: GMime serialises straight into the
// output, with no intermediate GByteArray and no copy of it (for a large body that copy was the
// last megabyte of the engine's peak memory, and a pass over every output byte).
struct MukaiStringStream {
  GMimeStream parent;
  std::string* out;
};
struct MukaiStringStreamClass {
  GMimeStreamClass parent_class;
};
G_DEFINE_TYPE(MukaiStringStream, mukai_string_stream, GMIME_TYPE_STREAM)

ssize_t string_stream_write(GMimeStream* stream, const char* buf, size_t len) {
  auto* self = reinterpret_cast<MukaiStringStream*>(stream);
  self->out->append(buf, len);
  stream->position += static_cast<gint64>(len);
  return static_cast<ssize_t>(len);
}
ssize_t string_stream_read(GMimeStream*, char*, size_t) { return -1; }
int string_stream_ok(GMimeStream*) { return 0; }
gboolean string_stream_eos(GMimeStream*) { return TRUE; }
int string_stream_reset(GMimeStream*) { return -1; }
gint64 string_stream_seek(GMimeStream*, gint64, GMimeSeekWhence) { return -1; }
gint64 string_stream_tell(GMimeStream* stream) { return stream->position; }
gint64 string_stream_length(GMimeStream*) { return -1; }
GMimeStream* string_stream_substream(GMimeStream*, gint64, gint64) { return nullptr; }

void mukai_string_stream_class_init(MukaiStringStreamClass* klass) {
  GMimeStreamClass* c = GMIME_STREAM_CLASS(klass);
  c->read = string_stream_read;
  c->write = string_stream_write;
  c->flush = string_stream_ok;
  c->close = string_stream_ok;
  c->eos = string_stream_eos;
  c->reset = string_stream_reset;
  c->seek = string_stream_seek;
  c->tell = string_stream_tell;
  c->length = string_stream_length;
  c->substream = string_stream_substream;
}
void mukai_string_stream_init(MukaiStringStream* self) { self->out = nullptr; }

// `expected_size`: a guess at the output length, so the string does not grow by doubling (each
// step a copy of everything written so far).
std::string serialise(GMimeMessage* msg, std::size_t expected_size) {
  format_options_ptr fmt(g_mime_format_options_new());
  g_mime_format_options_set_newline_format(fmt.get(), GMIME_NEWLINE_FORMAT_DOS);
  std::string out;
  out.reserve(expected_size);
  auto stream = adopt(static_cast<GMimeStream*>(g_object_new(mukai_string_stream_get_type(), nullptr)));
  reinterpret_cast<MukaiStringStream*>(stream.get())->out = &out;
  g_mime_stream_construct(stream.get(), 0, -1);
  if (g_mime_object_write_to_stream(GMIME_OBJECT(msg), fmt.get(), stream.get()) < 0) return {};
  if (g_mime_stream_flush(stream.get()) < 0) return {};
  return out;
}

}  // namespace

bool meets_output_invariant(std::string_view m) {
  // Every byte lies in a line or is a line's CRLF, so one search for NUL over the whole message
  // and one for CR inside each line (LF cannot be inside: lines are cut at the first LF) check
  // each byte without a per-byte loop; only header lines are walked byte by byte (8-bit test).
  if (m.empty()) return false;
  if (std::memchr(m.data(), '\0', m.size())) return false;
  bool in_headers = true;
  std::size_t pos = 0;
  while (pos < m.size()) {
    std::size_t lf = m.find('\n', pos);
    if (lf == std::string_view::npos || lf == pos || m[lf - 1] != '\r') return false;
    std::string_view line = m.substr(pos, lf - 1 - pos);
    if (line.size() > 998) return false;
    if (!line.empty() && std::memchr(line.data(), '\r', line.size())) return false;
    if (in_headers) {
      for (char c : line)
        if (static_cast<unsigned char>(c) >= 0x80) return false;
    }
    if (line.empty()) in_headers = false;
    pos = lf + 1;
  }
  return !in_headers;
}

std::string build_output_message(const output_spec& spec, const config::policy& pol) {
  ensure_gmime_initialized();
  const bool ja = pol.notice_language == config::language::ja;
  std::string body_bytes;                  // the ISO-2022-JP encoding, when that is used
  std::string_view body_view = spec.body;  // what GMime encodes
  const char* body_charset = "UTF-8";
  GMimeContentEncoding encoding = GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
  if (pol.encoding == config::body_encoding::base64) {
    encoding = GMIME_CONTENT_ENCODING_BASE64;
  } else if (pol.encoding == config::body_encoding::automatic) {
    // ASCII text with lines the SMTP limit allows goes as 7bit: readable as it is, nothing to
    // decode, and it crosses any next hop. Otherwise quoted-printable, or base64 for text that
    // is mostly non-ASCII (Japanese: QP would triple it).
    const std::string& b = spec.body;
    std::size_t high = 0, longest = 0;
    std::size_t i = 0;
    for (; i + 8 <= b.size(); i += 8)
      high += static_cast<std::size_t>(byte_scan::count_8bit(byte_scan::load8(b.data() + i)));
    for (; i < b.size(); ++i) high += static_cast<unsigned char>(b[i]) >> 7;
    for (std::size_t pos = 0;;) {  // longest run of bytes between two LFs
      const std::size_t lf = b.find('\n', pos);
      longest = std::max(longest, (lf == std::string::npos ? b.size() : lf) - pos);
      if (lf == std::string::npos) break;
      pos = lf + 1;
    }
    if (high == 0 && longest <= 900) encoding = GMIME_CONTENT_ENCODING_7BIT;
    else if (high * 3 > spec.body.size()) encoding = GMIME_CONTENT_ENCODING_BASE64;
  }
  const char* header_charset = "utf-8";
  if (pol.charset == config::output_charset::iso_2022_jp) {
    // Old LGWAN clients read only ISO-2022-JP. Text it cannot represent (e.g. emoji) keeps
    // UTF-8 rather than losing characters.
    // Strict ISO-2022-JP only: CP932 extensions (①, ㈱) are not in JIS X 0208, and a label that
    // promises ISO-2022-JP must be readable by any conforming decoder (glibc's is checked).
    auto jis = encode_from_utf8(spec.body, "iso-2022-jp");
    if (jis) {
      gsize written = 0;
      gchar* back = g_convert(jis->data(), static_cast<gssize>(jis->size()), "UTF-8", "ISO-2022-JP", nullptr,
                              &written, nullptr);
      if (!back) jis.reset();
      g_free(back);
    }
    if (jis) {
      body_bytes = std::move(*jis);
      body_view = body_bytes;
      body_charset = "ISO-2022-JP";
      encoding = GMIME_CONTENT_ENCODING_7BIT;
      header_charset = "iso-2022-jp";
    }
  }

  // GMime reads the body in place through a non-owning byte array (the encoder only reads it);
  // the array header is released after every GMime object (declared first, destroyed last),
  // never the bytes. A GByteArray length is a guint: a body the limits would never let through
  // fails closed rather than being cut.
  if (body_view.size() > G_MAXUINT / 2) return {};
  GByteArray* view = g_byte_array_new();
  view->data = reinterpret_cast<guint8*>(const_cast<char*>(body_view.data()));
  view->len = static_cast<guint>(body_view.size());
  struct view_release {
    GByteArray* v;
    ~view_release() { g_byte_array_free(v, FALSE); }
  } release{view};

  auto msg = adopt(g_mime_message_new(FALSE));
  GMimeObject* mo = GMIME_OBJECT(msg.get());
  if (!spec.received.empty()) g_mime_object_append_header(mo, "Received", spec.received.c_str(), nullptr);

  const header_fields* f = spec.fields;
  if (f && f->from && internet_address_list_length(f->from.get()) > 0) {
    copy_addresses(msg.get(), GMIME_ADDRESS_TYPE_FROM, f->from.get());
  } else {
    auto fallback = adopt(internet_address_mailbox_new("mukai", pol.notice_from.c_str()));
    internet_address_list_add(g_mime_message_get_addresses(msg.get(), GMIME_ADDRESS_TYPE_FROM), fallback.get());
  }
  if (f) {
    copy_addresses(msg.get(), GMIME_ADDRESS_TYPE_TO, f->to.get());
    copy_addresses(msg.get(), GMIME_ADDRESS_TYPE_CC, f->cc.get());
    copy_addresses(msg.get(), GMIME_ADDRESS_TYPE_REPLY_TO, f->reply_to.get());
  }
  std::string subject = f ? f->subject : std::string();
  if (spec.held) subject = std::string(ja ? "[保留] " : "[HELD] ") + subject;
  if (!subject.empty()) g_mime_message_set_subject(msg.get(), subject.c_str(), header_charset);
  if (f && f->date) {
    g_mime_message_set_date(msg.get(), f->date.get());
  } else {
    date_time_ptr now(g_date_time_new_now_utc());
    g_mime_message_set_date(msg.get(), now.get());
  }
  if (f && !f->message_id.empty()) g_mime_message_set_message_id(msg.get(), f->message_id.c_str());
  if (f && !f->in_reply_to.empty()) g_mime_object_set_header(mo, "In-Reply-To", ids_header(f->in_reply_to).c_str(), nullptr);
  if (f && !f->references.empty()) g_mime_object_set_header(mo, "References", ids_header(f->references).c_str(), nullptr);
  g_mime_object_set_header(mo, "MIME-Version", "1.0", nullptr);

  if (spec.rep) {
    std::string actions = spec.rep->actions.empty() ? std::string("none") : join(spec.rep->actions, "; ");
    g_mime_object_append_header(mo, "X-Mukai-Sanitized", actions.c_str(), nullptr);
    g_mime_object_append_header(mo, "X-Mukai-Verdict", to_string(spec.rep->result), nullptr);
    if (spec.rep->quarantine_id)
      g_mime_object_append_header(mo, "X-Mukai-Quarantine-ID", spec.rep->quarantine_id->c_str(), nullptr);
  }

  auto part = adopt(g_mime_part_new_with_type("text", "plain"));
  g_mime_object_set_content_type_parameter(GMIME_OBJECT(part.get()), "charset", body_charset);
  auto stream = adopt(g_mime_stream_mem_new_with_byte_array(view));
  g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream.get()), FALSE);
  auto wrapper = adopt(g_mime_data_wrapper_new_with_stream(stream.get(), GMIME_CONTENT_ENCODING_DEFAULT));
  g_mime_part_set_content(part.get(), wrapper.get());
  g_mime_part_set_content_encoding(part.get(), encoding);
  g_mime_message_set_mime_part(msg.get(), GMIME_OBJECT(part.get()));

  // Base64 grows the body by 4/3 plus CRLFs, quoted-printable by up to 3x; the headers fit in 8 KiB
  // unless an address list is huge (the buffer then grows as before).
  std::string out = serialise(msg.get(), body_view.size() + body_view.size() / 2 + 8192);
  if (!meets_output_invariant(out)) return {};
  return out;
}

std::string minimal_hold_message(const config::policy& pol, const std::string& quarantine_id) {
  const bool ja = pol.notice_language == config::language::ja;
  std::string id;
  for (char c : quarantine_id)
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-') id += c;
  std::string body = ja ? "=E4=BF=9D=E7=95=99: " : "Held: ";  // "保留" in quoted-printable
  body += "quarantine ID " + id + "\r\n";
  return "From: mukai <" + pol.notice_from + ">\r\nSubject: [HELD] " + id +
         "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
         "Content-Transfer-Encoding: quoted-printable\r\nX-Mukai-Sanitized: held\r\nX-Mukai-Verdict: held\r\n"
         "X-Mukai-Quarantine-ID: " + id + "\r\n\r\n" + body;
}

}  // namespace mukai::sanitize
