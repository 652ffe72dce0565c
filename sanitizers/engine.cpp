// The sanitization engine: parse -> analyse ambiguity -> walk (budgets) -> decide -> rebuild.
//
// Invariants:
//  - The output is built from scratch (allow-listed headers, one text/plain body); nothing of
//    the original tree is re-serialised, so hostile parameters never reach GMime's writer.
//  - Any failure, limit or ambiguity of the whole structure yields a hold notice, never a
//    partial original. The output is checked against the invariant before it is returned.
//  - Removed parts are returned with their decoded bytes and SHA-256 for the quarantine.
// Threading: each call owns its GMime objects; libmagic cookies are per thread.
#include "sanitizers/engine.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>

#include "sanitizers/ascii.hpp"
#include "sanitizers/charset.hpp"
#include "sanitizers/content_inspect.hpp"
#include "sanitizers/display_safe.hpp"
#include "sanitizers/flowed.hpp"
#include "sanitizers/gobject_ptr.hpp"
#include "sanitizers/header_fields.hpp"
#include "sanitizers/html_to_text.hpp"
#include "sanitizers/notice.hpp"
#include "sanitizers/output_message.hpp"
#include "sanitizers/removal_rules.hpp"
#include "sanitizers/text_blobs.hpp"
#include "sanitizers/text_clean.hpp"
#include "sanitizers/text_links.hpp"
#include "sanitizers/yenc_blocks.hpp"

namespace mukai::sanitize {

void ensure_gmime_initialized() {
  static std::once_flag once;
  std::call_once(once, [] { g_mime_init(); });
}

namespace {

using steady = std::chrono::steady_clock;

using ascii::lower;

std::string child_path(const std::string& parent, int index) {
  return parent.empty() ? std::to_string(index + 1) : parent + "." + std::to_string(index + 1);
}

// One GMime parser warning, kept with the byte offset the parser was at.
struct parser_warning {
  gint64 offset;
  GMimeParserWarning code;
  std::string item;
};

const char* warning_name(GMimeParserWarning code) {
  switch (code) {
    case GMIME_WARN_DUPLICATED_HEADER: return "duplicated-header";
    case GMIME_WARN_DUPLICATED_PARAMETER: return "duplicated-parameter";
    case GMIME_WARN_UNENCODED_8BIT_HEADER: return "unencoded-8bit-header";
    case GMIME_WARN_INVALID_CONTENT_TYPE: return "invalid-content-type";
    case GMIME_WARN_INVALID_RFC2047_HEADER_VALUE: return "invalid-rfc2047";
    case GMIME_WARN_MALFORMED_MULTIPART: return "malformed-multipart";
    case GMIME_WARN_TRUNCATED_MESSAGE: return "truncated-message";
    case GMIME_WARN_MALFORMED_MESSAGE: return "malformed-message";
    case GMIME_CRIT_INVALID_HEADER_NAME: return "invalid-header-name";
    case GMIME_CRIT_CONFLICTING_HEADER: return "conflicting-header";
    case GMIME_CRIT_CONFLICTING_PARAMETER: return "conflicting-parameter";
    case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY: return "multipart-without-boundary";
    case GMIME_WARN_INVALID_PARAMETER: return "invalid-parameter";
    case GMIME_WARN_INVALID_ADDRESS_LIST: return "invalid-address-list";
    case GMIME_CRIT_NESTING_OVERFLOW: return "nesting-overflow";
    case GMIME_WARN_PART_WITHOUT_CONTENT: return "part-without-content";
    case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT: return "part-without-headers-or-content";
  }
  return "unknown";
}

void collect_warning(gint64 offset, GMimeParserWarning code, const gchar* item, gpointer user) {
  auto* list = static_cast<std::vector<parser_warning>*>(user);
  if (list->size() >= 1000) return;  // bound: a hostile message can raise one per line
  list->push_back({offset, code, item ? std::string(item).substr(0, 200) : std::string()});
}

// Decodes a part's content straight into one string, chunk by chunk: no intermediate growing
// buffer, so a 25 MB attachment costs its decoded size once (the memory target of the engine).
std::string decode_part_bytes(GMimePart* part, std::uint64_t cap, bool& too_big) {
  too_big = false;
  GMimeDataWrapper* content = g_mime_part_get_content(part);
  if (!content) return {};
  GMimeContentEncoding enc = g_mime_data_wrapper_get_encoding(content);
  GMimeStream* stream = g_mime_data_wrapper_get_stream(content);
  if (!stream) return {};
  const bool stepwise = enc == GMIME_CONTENT_ENCODING_BASE64 || enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
  const bool identity = enc == GMIME_CONTENT_ENCODING_DEFAULT || enc == GMIME_CONTENT_ENCODING_7BIT ||
                        enc == GMIME_CONTENT_ENCODING_8BIT || enc == GMIME_CONTENT_ENCODING_BINARY;
  if (!stepwise && !identity) {
    // uuencode: GMime's filter finds the "begin" line; the rare case may take the slower path.
    auto mem = adopt(g_mime_stream_mem_new());
    if (g_mime_data_wrapper_write_to_stream(content, mem.get()) < 0) return {};
    GByteArray* arr = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem.get()));
    if (!arr) return {};
    if (arr->len > cap) {
      too_big = true;
      return {};
    }
    return std::string(reinterpret_cast<const char*>(arr->data), arr->len);
  }
  if (g_mime_stream_reset(stream) < 0) return {};
  std::string out;
  gint64 length = g_mime_stream_length(stream);
  if (length > 0) out.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(static_cast<std::uint64_t>(length), cap)));
  GMimeEncoding state;
  g_mime_encoding_init_decode(&state, enc);
  std::vector<char> in(64 * 1024);
  std::vector<char> decoded;
  for (;;) {
    gssize n = g_mime_stream_read(stream, in.data(), in.size());
    if (n < 0) return {};
    const bool eof = n == 0;
    if (identity) {
      out.append(in.data(), static_cast<std::size_t>(n));
    } else {
      decoded.resize(g_mime_encoding_outlen(&state, static_cast<std::size_t>(n)) + 16);
      std::size_t m = eof ? g_mime_encoding_flush(&state, in.data(), 0, decoded.data())
                          : g_mime_encoding_step(&state, in.data(), static_cast<std::size_t>(n), decoded.data());
      out.append(decoded.data(), m);
    }
    if (out.size() > cap) {
      too_big = true;
      return {};
    }
    if (eof) break;
  }
  return out;
}

// The prefix libmagic sees for a part declared as text: binary formats announce themselves in
// their first bytes, and libmagic's text rules cost time in proportion to the length.
constexpr std::size_t text_detection_window = 16 * 1024;

bool is_text_compatible_detection(std::string_view detected) {
  static constexpr std::string_view ok[] = {
      "application/x-empty", "inode/x-empty", "application/octet-stream", "application/json",
      "application/xml", "application/javascript", "application/x-wine-extension-ini", "application/mbox",
      "application/pgp-keys", "application/pgp-signature", "application/pgp-encrypted", "application/pgp",
      "application/x-pem-file", "application/x-subrip", "application/csv", "application/x-ndjson"};
  if (detected.substr(0, 5) == "text/" || detected.substr(0, 8) == "message/") return true;
  return std::find(std::begin(ok), std::end(ok), detected) != std::end(ok);
}

message_headers summarize_headers(const header_fields& f) {
  message_headers h;
  h.from = f.from_text;
  h.subject = f.subject;
  h.date = f.date_text;
  h.message_id = f.message_id;
  if (f.to) {
    gchar_ptr to(internet_address_list_to_string(f.to.get(), nullptr, FALSE));
    if (to) h.to = to.get();
  }
  return h;
}

class message_sanitizer {
 public:
  message_sanitizer(std::string_view raw, const config::policy& pol, const request& req)
      : raw_(raw), pol_(pol), req_(req), deadline_(steady::now() + pol.limit.max_processing_time) {
    yenc_limits_.max_size = pol.limit.max_message_size;
  }

  result run();

 private:
  // What the walk produces for one scope (the message, or a forwarded message inside it).
  struct sink {
    std::string text;
    bool has_content() const { return !text.empty(); }
  };
  enum class walk_mode { show, collect };

  void hold(std::string reason) {
    if (std::find(hold_reasons_.begin(), hold_reasons_.end(), reason) == hold_reasons_.end())
      hold_reasons_.push_back(std::move(reason));
  }
  bool holding() const { return !hold_reasons_.empty(); }
  bool over_budget() {
    if (steady::now() > deadline_) hold("limit:time");
    return holding();
  }
  void warn(std::string w) {
    if (rep_.warnings.size() < 200 &&
        std::find(rep_.warnings.begin(), rep_.warnings.end(), w) == rep_.warnings.end())
      rep_.warnings.push_back(std::move(w));
  }

  void analyse_warnings(GMimeMessage* message);
  void index_objects(GMimeObject* obj, int depth);
  void walk(GMimeObject* obj, const std::string& path, int depth, sink& out, walk_mode mode, bool related_child);
  void walk_multipart(GMimeMultipart* mp, const std::string& path, int depth, sink& out, walk_mode mode);
  void walk_message_part(GMimeMessagePart* mp, const std::string& path, int depth, sink& out, walk_mode mode);
  void leaf(GMimePart* part, const std::string& path, sink& out, walk_mode mode, bool related_child);
  // `pre_cut`: blocks already cut from the part's bytes (yEnc), block i standing in `text` as
  // "[[mukai-yenc:i]]"; they are numbered and listed with the blobs cut_encoded_blobs finds.
  void show_text(const std::string& path, std::string text, std::string_view label, sink& out,
                 std::vector<text_blob> pre_cut = {});
  std::string plain_text(std::string_view utf8, const part_info& info) const;
  std::string plain_text_around_yenc(const std::string& path, std::string_view bytes, std::string_view charset,
                                     const part_info& info, std::vector<yenc_block>& blocks,
                                     std::vector<text_blob>& cut);
  void remove_part(part_report pr, std::string bytes, std::string_view name_alt, std::string_view base_reason);
  int choose_alternative(GMimeMultipart* mp);
  // A part's decoded content, decoded at most once per message (the alternative choice looks at
  // text/plain before the walk shows it); leaf() moves it out.
  std::string& decoded_content(GMimePart* part, bool& too_big);
  void append_output_checked(sink& out, std::string text);
  result finish(GMimeMessage* message, std::string body);
  result finish_held(const header_fields* fields);

  std::string_view raw_;
  const config::policy& pol_;
  const request& req_;
  steady::time_point deadline_;

  report rep_;
  std::vector<removed_part> quarantine_;
  std::vector<std::string> hold_reasons_;
  std::vector<parser_warning> warnings_;
  std::map<GMimeObject*, std::string> ambiguous_;
  struct decoded_part {
    std::string bytes;
    bool too_big = false;
  };
  std::map<GMimePart*, decoded_part> decoded_;  // part -> why (a region to remove, or hold if multipart)
  std::vector<std::pair<gint64, GMimeObject*>> offsets_;
  int part_count_ = 0;
  int blob_count_ = 0;
  yenc_limits yenc_limits_;
  std::string header_charset_hint_;
  notice_summary summary_;
  parser_options_ptr parser_options_;
};

// Maps every parser warning to the part whose header block precedes it, and decides what the
// warning means: a sloppiness to note, a region to remove, or a structure to distrust whole.
void message_sanitizer::analyse_warnings(GMimeMessage* message) {
  offsets_.clear();
  if (GMimeObject* top = g_mime_message_get_mime_part(message)) index_objects(top, 0);
  std::sort(offsets_.begin(), offsets_.end(), [](auto& a, auto& b) { return a.first < b.first; });
  for (auto& w : warnings_) {
    // The part whose header block starts last at or before the warning's offset.
    auto after = std::upper_bound(offsets_.begin(), offsets_.end(), w.offset,
                                  [](gint64 off, const auto& entry) { return off < entry.first; });
    GMimeObject* owner = after == offsets_.begin() ? nullptr : std::prev(after)->second;
    std::string name = warning_name(w.code);
    switch (w.code) {
      case GMIME_CRIT_NESTING_OVERFLOW:
        hold("limit:mime-depth");
        break;
      case GMIME_CRIT_CONFLICTING_HEADER:
      case GMIME_CRIT_CONFLICTING_PARAMETER: {
        // Two different Content-Type/CTE/boundary/filename values: mail programs pick
        // differently, which is exactly how attachments are smuggled past scanners.
        std::string item = lower(w.item);
        bool content_related = item.find("content-") != std::string::npos || item.find("boundary") != std::string::npos ||
                               item.find("name") != std::string::npos || item.find("charset") != std::string::npos ||
                               w.code == GMIME_CRIT_CONFLICTING_PARAMETER;
        if (!content_related) {
          warn("parser:" + name + ":" + display_safe(item, 40));
        } else if (!owner || owner == g_mime_message_get_mime_part(message)) {
          // The top-level entity is in doubt: no region of the message can be trusted.
          hold("ambiguous:" + name);
        } else {
          ambiguous_.emplace(owner, name);
        }
        break;
      }
      case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
        if (owner) ambiguous_.emplace(owner, name);
        else hold("ambiguous:" + name);
        break;
      default:
        warn("parser:" + name);
        break;
    }
  }
}

void message_sanitizer::index_objects(GMimeObject* obj, int depth) {
  if (depth > pol_.limit.max_mime_depth + 1 || offsets_.size() > static_cast<std::size_t>(pol_.limit.max_parts) + 1) return;
  GMimeHeaderList* headers = g_mime_object_get_header_list(obj);
  if (headers && g_mime_header_list_get_count(headers) > 0) {
    gint64 off = g_mime_header_get_offset(g_mime_header_list_get_header_at(headers, 0));
    if (off >= 0) offsets_.emplace_back(off, obj);
  }
  if (GMIME_IS_MULTIPART(obj)) {
    GMimeMultipart* mp = GMIME_MULTIPART(obj);
    int n = g_mime_multipart_get_count(mp);
    for (int i = 0; i < n; ++i) index_objects(g_mime_multipart_get_part(mp, i), depth + 1);
  }
  // Offsets inside message/rfc822 parts are relative to the outer stream as well, but the
  // inner message is only reached through the walk; its warnings map to the enclosing part.
}

std::string& message_sanitizer::decoded_content(GMimePart* part, bool& too_big) {
  auto it = decoded_.find(part);
  if (it == decoded_.end()) {
    decoded_part d;
    d.bytes = decode_part_bytes(part, pol_.limit.max_message_size, d.too_big);
    it = decoded_.emplace(part, std::move(d)).first;
  }
  too_big = it->second.too_big;
  return it->second.bytes;
}

int message_sanitizer::choose_alternative(GMimeMultipart* mp) {
  int n = g_mime_multipart_get_count(mp);
  int plain = -1, html = -1;
  for (int i = 0; i < n; ++i) {
    GMimeObject* child = g_mime_multipart_get_part(mp, i);
    GMimeContentType* ct = g_mime_object_get_content_type(child);
    std::string type = ct ? lower(gchar_ptr(g_mime_content_type_get_mime_type(ct)).get()) : "text/plain";
    if (type == "text/plain" && GMIME_IS_PART(child) && plain < 0) {
      bool too_big = false;
      const std::string& bytes = decoded_content(GMIME_PART(child), too_big);
      bool blank = std::all_of(bytes.begin(), bytes.end(), [](char c) { return ascii::is_space(c); });
      if (!blank || too_big) plain = i;
    } else if (type == "text/html" || (GMIME_IS_MULTIPART(child) && type != "multipart/alternative")) {
      html = i;  // the last rich alternative is the sender's preferred one (RFC 2046 5.1.4)
    }
  }
  if (pol_.prefer_html && html >= 0) return html;
  if (plain >= 0) return plain;
  if (html >= 0) return html;
  return n > 0 ? n - 1 : -1;
}

void message_sanitizer::walk(GMimeObject* obj, const std::string& path, int depth, sink& out, walk_mode mode,
                             bool related_child) {
  if (over_budget()) return;
  if (depth > pol_.limit.max_mime_depth) {
    hold("limit:mime-depth");
    return;
  }
  if (++part_count_ > pol_.limit.max_parts) {
    hold("limit:parts");
    return;
  }
  if (GMIME_IS_MULTIPART(obj)) {
    walk_multipart(GMIME_MULTIPART(obj), path, depth, out, mode);
  } else if (GMIME_IS_MESSAGE_PART(obj)) {
    walk_message_part(GMIME_MESSAGE_PART(obj), path, depth, out, mode);
  } else if (GMIME_IS_PART(obj)) {
    leaf(GMIME_PART(obj), path, out, mode, related_child);
  } else {
    hold("ambiguous:unknown-object");
  }
}

void message_sanitizer::walk_multipart(GMimeMultipart* mp, const std::string& path, int depth, sink& out,
                                       walk_mode mode) {
  GMimeObject* obj = GMIME_OBJECT(mp);
  if (auto it = ambiguous_.find(obj); it != ambiguous_.end()) {
    // The boundary itself is in doubt: the children we see may not be the ones a client sees.
    hold("ambiguous:" + it->second);
    return;
  }
  GMimeContentType* ct = g_mime_object_get_content_type(obj);
  std::string subtype = ct && g_mime_content_type_get_media_subtype(ct) ? lower(g_mime_content_type_get_media_subtype(ct)) : "mixed";
  int n = g_mime_multipart_get_count(mp);

  if (GMIME_IS_MULTIPART_ENCRYPTED(mp) || subtype == "encrypted") {
    hold("encrypted");
    return;
  }
  if (n == 0) {
    // No delimiter was found: what a client shows here is a guess. Nested: remove the region.
    if (depth == 0) {
      hold("ambiguous:multipart-without-parts");
      return;
    }
    const char* prologue = g_mime_multipart_get_prologue(mp);
    part_report pr;
    pr.path = path;
    pr.declared_type = "multipart/" + subtype;
    std::string bytes = prologue ? prologue : "";
    remove_part(std::move(pr), std::move(bytes), {}, "ambiguous:multipart-without-parts");
    return;
  }
  if (subtype == "alternative") {
    int chosen = choose_alternative(mp);
    for (int i = 0; i < n && !holding(); ++i)
      walk(g_mime_multipart_get_part(mp, i), child_path(path, i), depth + 1, out,
           i == chosen ? mode : walk_mode::collect, false);
    return;
  }
  if (subtype == "signed") {
    for (int i = 0; i < n && !holding(); ++i) {
      GMimeObject* child = g_mime_multipart_get_part(mp, i);
      if (i == 0) {
        walk(child, child_path(path, i), depth + 1, out, mode, false);
      } else {
        summary_.signature_removed = true;
        walk(child, child_path(path, i), depth + 1, out, walk_mode::collect, false);
      }
    }
    return;
  }
  int root = 0;
  if (subtype == "related") {
    const char* start = ct ? g_mime_content_type_get_parameter(ct, "start") : nullptr;
    if (start) {
      std::string want = lower(start);
      want.erase(std::remove(want.begin(), want.end(), '<'), want.end());
      want.erase(std::remove(want.begin(), want.end(), '>'), want.end());
      for (int i = 0; i < n; ++i) {
        const char* cid = g_mime_object_get_content_id(g_mime_multipart_get_part(mp, i));
        if (cid && lower(cid) == want) root = i;
      }
    }
  }
  for (int i = 0; i < n && !holding(); ++i) {
    bool related_child = subtype == "related" && i != root;
    walk(g_mime_multipart_get_part(mp, i), child_path(path, i), depth + 1, out, mode, related_child);
  }
}

void message_sanitizer::walk_message_part(GMimeMessagePart* mp, const std::string& path, int depth, sink& out,
                                          walk_mode mode) {
  GMimeMessage* inner = g_mime_message_part_get_message(mp);
  GMimeObject* body = inner ? g_mime_message_get_mime_part(inner) : nullptr;
  if (!inner || !body) {
    part_report pr;
    pr.path = path;
    pr.declared_type = "message/rfc822";
    remove_part(std::move(pr), {}, {}, "attachment");
    return;
  }
  std::string body_path = GMIME_IS_MULTIPART(body) ? path : child_path(path, 0);
  if (mode == walk_mode::collect) {
    sink ignored;
    walk(body, body_path, depth + 1, ignored, mode, false);
    return;
  }
  header_fields inner_fields = read_header_fields(inner, parser_options_.get(), header_charset_hint_);
  sink inner_out;
  walk(body, body_path, depth + 1, inner_out, mode, false);
  if (holding()) return;
  const bool ja = pol_.notice_language == config::language::ja;
  std::string block = ja ? "---------- 転送されたメッセージ ----------\n" : "---------- Forwarded message ----------\n";
  std::string quoted;
  quoted += (ja ? "差出人: " : "From: ") + inner_fields.from_text + "\n";
  quoted += (ja ? "日付: " : "Date: ") + inner_fields.date_text + "\n";
  quoted += (ja ? "件名: " : "Subject: ") + inner_fields.subject + "\n\n";
  quoted += inner_out.text;
  std::size_t pos = 0;
  while (pos < quoted.size()) {
    std::size_t eol = quoted.find('\n', pos);
    if (eol == std::string::npos) eol = quoted.size();
    block += eol == pos ? ">" : "> ";
    block.append(quoted, pos, eol - pos);
    block += '\n';
    pos = eol + 1;
  }
  append_output_checked(out, std::move(block));
}

std::string message_sanitizer::plain_text(std::string_view utf8, const part_info& info) const {
  std::string text = clean_text(utf8);
  if (info.format_flowed) text = unflow_text(text, info.delsp);
  return text;
}

// The text of a plain part whose yEnc blocks were cut from its bytes: each stretch between blocks
// decoded on its own (a stateful charset such as ISO-2022-JP starts afresh after a block, as it did
// at the line start before it; the yEnc bytes never reach the decoder), in the charset the text
// around the blocks as a whole decoded in, and block i replaced by "[[mukai-yenc:i]]". Literal
// markers in the text are neutralised after cleaning and unflowing, which could otherwise join one
// together. Moves each block into `cut` as a text_blob for show_text.
std::string message_sanitizer::plain_text_around_yenc(const std::string& path, std::string_view bytes,
                                                      std::string_view charset, const part_info& info,
                                                      std::vector<yenc_block>& blocks, std::vector<text_blob>& cut) {
  const std::vector<std::string_view> segments = yenc_text_segments(bytes, blocks);
  std::string text;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    if (!segments[i].empty()) {
      // Warnings were given for the whole text already.
      append_neutralised(text, plain_text(decode_to_utf8(segments[i], charset, header_charset_hint_).utf8, info),
                         yenc_marker_prefix);
    }
    if (i == blocks.size()) break;
    yenc_block& b = blocks[i];
    text += yenc_marker_prefix;
    text += std::to_string(i);
    text += "]]";
    if (!b.problem.empty()) warn(path + ":yenc-damaged:" + b.problem);
    // The name's bytes are in the text's charset; the report and the notice need UTF-8.
    std::string name = b.filename.empty() ? std::string() : clean_text(decode_to_utf8(b.filename, charset).utf8);
    cut.push_back(text_blob{b.begin, b.end, "yenc", std::move(name), std::move(b.bytes)});
  }
  return text;
}

void message_sanitizer::show_text(const std::string& path, std::string text, std::string_view label, sink& out,
                                  std::vector<text_blob> pre_cut) {
  // Encoded payloads (uuencode, yEnc, BinHex, base64 runs, PGP armour) are cut out of text and
  // handled like attachments: a text body must not carry a decodable file past the relay.
  // Both steps work in place: a body without blobs and URLs (most of them) is not copied.
  std::vector<text_blob> blobs = cut_encoded_blobs_in_place(text);
  // Every block becomes a removed part, stored in the quarantine: a text of thousands of tiny
  // uuencode blocks must not turn into thousands of files. Over the message's part budget, the
  // message is held whole, as a MIME tree with too many parts is. (The yEnc blocks cut before,
  // pre_cut, have their own bound: past it the rest of the part is one block.)
  if (static_cast<std::size_t>(blob_count_) + blobs.size() > static_cast<std::size_t>(std::max(pol_.limit.max_parts, 0))) {
    hold("limit:parts");
    return;
  }
  text_link_counts links;
  apply_link_policy_in_place(text, pol_, links);
  summary_.links_defanged += links.defanged;
  summary_.links_removed += links.removed;
  if (!blobs.empty() || !pre_cut.empty()) {
    // One pass over the text: the placeholders of each kind stand in index order (links never span
    // lines, and literal placeholders were neutralised), so each is looked for after the previous
    // one, and the two kinds are merged by position: parts are numbered in the order the reader
    // meets them. Why not search from the start for each: that is quadratic in the number of blobs,
    // and it would find a placeholder spelled inside an earlier blob's file name instead of the real
    // one. A placeholder not found (a later pass swallowed it) still has its block removed.
    struct marker_list {
      std::string_view prefix;
      std::vector<text_blob>& blobs;
      std::size_t next = 0;
      bool looked = false;                 // `at` and `marker_size` are for blobs[next]
      std::size_t at = std::string::npos;  // where blobs[next]'s placeholder is
      std::size_t marker_size = 0;
    };
    std::array<marker_list, 2> lists{marker_list{yenc_marker_prefix, pre_cut}, marker_list{blob_marker_prefix, blobs}};
    const bool ja = pol_.notice_language == config::language::ja;
    std::string shown;
    shown.reserve(text.size() + (blobs.size() + pre_cut.size()) * 64);
    std::size_t copied = 0;
    const auto take = [&](marker_list& list) {
      auto& blob = list.blobs[list.next];
      part_report pr;
      pr.path = path + "#" + std::to_string(++blob_count_);
      pr.declared_type = "text/x-" + blob.kind;
      pr.filename = blob.filename;
      if (list.at != std::string::npos) {
        shown.append(text, copied, list.at - copied);
        shown += ja ? "[本文中の符号化データ (" + blob.kind + ") を削除しました: " + display_safe(blob.filename, 80) + "]"
                    : "[encoded data (" + blob.kind + ") removed: " + display_safe(blob.filename, 80) + "]";
        copied = list.at + list.marker_size;
      }
      remove_part(std::move(pr), std::move(blob.decoded), {}, "encoded-block");
      ++list.next;
      list.looked = false;
    };
    for (;;) {
      marker_list* first = nullptr;
      for (auto& list : lists) {
        while (list.next < list.blobs.size() && !list.looked) {
          const std::string marker = std::string(list.prefix) + std::to_string(list.next) + "]]";
          list.at = text.find(marker, copied);
          list.marker_size = marker.size();
          list.looked = list.at != std::string::npos;
          if (!list.looked) take(list);  // not in the text: removed all the same
        }
        if (list.next < list.blobs.size() && (!first || list.at < first->at)) first = &list;
      }
      if (!first) break;
      take(*first);
    }
    shown.append(text, copied);
    text = std::move(shown);
  }
  if (label.empty()) {
    append_output_checked(out, std::move(text));
    return;
  }
  std::string block = std::string(label) + "\n";
  block += text;
  append_output_checked(out, std::move(block));
}

void message_sanitizer::append_output_checked(sink& out, std::string text) {
  std::size_t keep = text.size();
  while (keep > 0 && (text[keep - 1] == '\n' || text[keep - 1] == ' ')) --keep;
  if (keep == 0) return;
  text.resize(keep);
  if (out.has_content()) {
    out.text += "\n----------------------------------------\n\n";
    out.text += text;
  } else {
    out.text = std::move(text);  // the first (often the only) text of the scope: no copy
  }
  out.text += '\n';
  if (out.text.size() > pol_.limit.max_decoded_output) hold("limit:output-size");
}

void message_sanitizer::remove_part(part_report pr, std::string bytes, std::string_view name_alt,
                                    std::string_view base_reason) {
  content_facts facts = inspect_content(bytes, pr.filename, pr.declared_type);
  if (!name_alt.empty() && name_alt != pr.filename) {
    // Content-Type name and Content-Disposition filename disagree: a client may save under
    // either, so the flags of both count.
    content_facts alt = inspect_content(bytes, name_alt, pr.declared_type);
    for (auto f : alt.flags)
      if (!facts.has(f)) facts.flags.push_back(f);
  }
  pr.detected_type = facts.detected_type;
  pr.size = bytes.size();
  pr.sha256 = sha256_hex(bytes);
  for (auto f : facts.flags) pr.flags.push_back(to_string(f));
  removal_decision d = decide_removal(facts, bytes.size(), pol_);
  pr.action = d.action == config::removed_action::quarantine ? part_action::quarantined : part_action::discarded;
  pr.reason = d.reason == "default" || d.reason.empty() ? std::string(base_reason) : d.reason;
  if (bytes.empty() && base_reason != "ambiguous:multipart-without-parts") {
    pr.action = part_action::discarded;
    pr.reason = "empty";
  }
  if (pr.action == part_action::quarantined) quarantine_.push_back({pr.path, pr.sha256, pr.filename, std::move(bytes)});
  rep_.parts.push_back(std::move(pr));
}

void message_sanitizer::leaf(GMimePart* part, const std::string& path, sink& out, walk_mode mode, bool related_child) {
  GMimeObject* obj = GMIME_OBJECT(part);
  part_info info = read_part_info(obj, parser_options_.get(), header_charset_hint_);
  part_report pr;
  pr.path = path;
  pr.declared_type = info.mime_type;
  pr.filename = info.filename;

  bool too_big = false;
  std::string bytes = std::move(decoded_content(part, too_big));
  decoded_.erase(part);
  if (too_big) {
    hold("limit:message-size");
    return;
  }
  const std::string& type = info.mime_type;

  if (auto it = ambiguous_.find(obj); it != ambiguous_.end()) {
    remove_part(std::move(pr), std::move(bytes), info.name_param, "ambiguous:" + it->second);
    return;
  }
  if (!info.transfer_encoding_known) {
    remove_part(std::move(pr), std::move(bytes), info.name_param, "ambiguous:unknown-transfer-encoding");
    return;
  }

  static constexpr std::string_view plain_like[] = {
      "text/plain", "message/delivery-status", "message/global-delivery-status", "message/disposition-notification",
      "text/rfc822-headers", "message/feedback-report", "text/markdown", "text/x-markdown", "text/x-log",
      "text/x-diff", "text/x-patch"};
  bool is_plain = std::find(std::begin(plain_like), std::end(plain_like), type) != std::end(plain_like);
  bool is_html = type == "text/html" || type == "application/xhtml+xml";

  if (type == "application/pkcs7-mime" || type == "application/x-pkcs7-mime") {
    std::string smime = lower(info.smime_type);
    if (smime.empty() || smime == "enveloped-data" || smime == "authenveloped-data") {
      // The content is encrypted: nothing can be inspected, so nothing can be passed.
      hold("encrypted");
      return;
    }
  }

  if (mode == walk_mode::collect && (is_plain || is_html)) {
    pr.size = bytes.size();
    pr.sha256 = sha256_hex(bytes);
    const std::string_view window = std::string_view(bytes).substr(0, text_detection_window);
    pr.detected_type = is_plain ? detect_declared_text_type(window) : detect_mime_type(window);
    pr.action = part_action::discarded;
    pr.reason = "alternative-not-shown";
    rep_.parts.push_back(std::move(pr));
    return;
  }

  if (is_plain) {
    // 8-bit yEnc is cut from the bytes before anything reads them as text (yenc_blocks.hpp): only
    // the bytes around the blocks are tested for "binary declared as text" and charset-decoded.
    // Every block becomes a removed part: a message gets at most max_parts of them, all parts
    // together; past that, the rest of the part from the next =ybegin goes as one block.
    yenc_limits limits = yenc_limits_;
    limits.max_blocks = static_cast<std::size_t>(std::max(pol_.limit.max_parts - blob_count_, 0));
    std::vector<yenc_block> yenc = find_yenc_blocks(bytes, limits);
    std::string outside;
    if (!yenc.empty()) {
      for (const std::string_view segment : yenc_text_segments(bytes, yenc)) outside += segment;
    }
    const std::string_view text_bytes = yenc.empty() ? std::string_view(bytes) : std::string_view(outside);
    std::string detected = detect_declared_text_type(text_bytes.substr(0, text_detection_window));
    if (!is_text_compatible_detection(detected)) {
      remove_part(std::move(pr), std::move(bytes), info.name_param, "binary-as-text");
      return;
    }
    if (info.is_attachment && !pol_.inline_text_attachments) {
      remove_part(std::move(pr), std::move(bytes), info.name_param, "attachment");
      return;
    }
    decoded_text dec = decode_to_utf8(text_bytes, info.charset, header_charset_hint_);
    std::string().swap(outside);
    for (auto& w : dec.warnings) warn(path + ":" + w);
    if (dec.detected) summary_.charset_guessed = true;
    if (junk_ratio(dec.utf8) > 0.02) {
      remove_part(std::move(pr), std::move(bytes), info.name_param, "binary-as-text");
      return;
    }
    std::vector<text_blob> yenc_blobs;
    std::string text = yenc.empty() ? plain_text(dec.utf8, info)
                                    : plain_text_around_yenc(path, bytes, dec.charset, info, yenc, yenc_blobs);
    pr.detected_type = detected;
    pr.size = bytes.size();
    pr.sha256 = sha256_hex(bytes);
    // Neither copy is needed any more: freed before the text passes (peak memory on large bodies).
    std::string().swap(dec.utf8);
    std::string().swap(bytes);
    pr.action = part_action::kept_as_text;
    pr.reason = info.is_attachment ? "text-attachment-inline" : "text";
    rep_.parts.push_back(std::move(pr));
    std::string label;
    if (info.is_attachment)
      label = pol_.notice_language == config::language::ja ? "[添付テキスト: " + display_safe(info.filename, 120) + "]"
                                                           : "[attached text: " + display_safe(info.filename, 120) + "]";
    show_text(path, std::move(text), label, out, std::move(yenc_blobs));
    return;
  }

  if (is_html && !info.is_attachment) {
    if (bytes.size() > pol_.limit.max_html_size) {
      hold("limit:html-size");
      return;
    }
    std::string label = info.charset;
    if (label.empty()) {
      if (auto sniffed = sniff_html_charset(bytes)) label = *sniffed;
    }
    decoded_text dec = decode_to_utf8(bytes, label, header_charset_hint_);
    for (auto& w : dec.warnings) warn(path + ":" + w);
    if (dec.detected) summary_.charset_guessed = true;
    html_options opt;
    opt.http_links = pol_.http_links;
    opt.mailto_links = pol_.mailto_links;
    opt.tel_links = pol_.tel_links;
    opt.mark_phishing_links = pol_.mark_phishing_links;
    opt.lang = pol_.notice_language;
    opt.max_output = pol_.limit.max_decoded_output;
    opt.deadline = deadline_;
    opt.max_depth = 256;
    html_result h = html_to_text(dec.utf8, opt);
    if (h.timed_out) {
      hold("limit:time");
      return;
    }
    if (h.parse_aborted) {  // gumbo hit its memory bound: the HTML is built to exhaust parsers
      hold("limit:html-complexity");
      return;
    }
    if (h.truncated) {
      hold("limit:output-size");
      return;
    }
    summary_.html_converted = true;
    summary_.links_defanged += h.links_defanged;
    summary_.links_removed += h.links_removed;
    summary_.phishing_cues += h.phishing_cues;
    pr.detected_type = detect_mime_type(std::string_view(bytes).substr(0, text_detection_window));
    pr.size = bytes.size();
    pr.sha256 = sha256_hex(bytes);
    pr.action = part_action::converted;
    pr.reason = "html-to-text";
    rep_.parts.push_back(std::move(pr));
    show_text(path, clean_text(h.text), {}, out);
    return;
  }

  std::string_view reason = "attachment";
  if (is_html) reason = "html-attachment";
  else if (type.substr(0, 5) == "text/") reason = "active-text-type";
  else if (type == "message/partial") reason = "message-partial";
  else if (type == "message/external-body") reason = "external-body";
  else if (type == "application/pkcs7-signature" || type == "application/x-pkcs7-signature" ||
           type == "application/pgp-signature" || type == "application/pkcs7-mime" ||
           type == "application/x-pkcs7-mime") {
    reason = "signature";
    summary_.signature_removed = true;
  } else if (related_child && (type.substr(0, 6) == "image/" || !info.is_attachment)) reason = "inline-image";
  remove_part(std::move(pr), std::move(bytes), info.name_param, reason);
}

result message_sanitizer::finish_held(const header_fields* fields) {
  result r;
  rep_.result = verdict::held;
  rep_.reasons = hold_reasons_;
  rep_.quarantine_id = req_.quarantine_id;
  rep_.actions = {"held"};
  // A held message is kept whole as the original; part copies would only duplicate it.
  quarantine_.clear();
  hold_facts facts;
  if (fields) {
    facts.from = fields->from_text;
    facts.subject = fields->subject;
    facts.date = fields->date_text;
  }
  facts.reasons = hold_reasons_;
  facts.quarantine_id = req_.quarantine_id;
  std::string body = render_hold_notice(pol_, facts);
  output_spec spec;
  spec.fields = fields;
  spec.held = true;
  spec.body = std::move(body);
  spec.rep = &rep_;
  spec.received = req_.received_by;
  r.output = build_output_message(spec, pol_);
  if (r.output.empty()) {
    r.output = minimal_hold_message(pol_, req_.quarantine_id);
  } else {
    r.body_text = std::move(spec.body);
  }
  if (fields) r.headers = summarize_headers(*fields);
  r.rep = std::move(rep_);
  r.quarantine_original = true;
  return r;
}

// For a message held before it is parsed (too large): its header block alone, within the
// header limit, so the hold notice can still name sender, subject and date.
std::optional<header_fields> read_header_block_only(std::string_view raw, const config::policy& pol,
                                                    GMimeParserOptions* options) {
  std::size_t end = std::min(raw.find("\n\n"), raw.find("\r\n\r\n"));
  if (end == std::string_view::npos || end > pol.limit.max_header_size) return std::nullopt;
  std::string block(raw.substr(0, end));
  block += "\n\n";
  auto stream = adopt(g_mime_stream_mem_new_with_buffer(block.data(), block.size()));
  auto parser = adopt(g_mime_parser_new_with_stream(stream.get()));
  auto message = adopt(g_mime_parser_construct_message(parser.get(), options));
  if (!message) return std::nullopt;
  return read_header_fields(message.get(), options, {});
}

result message_sanitizer::run() {
  ensure_gmime_initialized();
  parser_options_.reset(g_mime_parser_options_new());
  g_mime_parser_options_set_rfc2047_compliance_mode(parser_options_.get(), GMIME_RFC_COMPLIANCE_LOOSE);
  g_mime_parser_options_set_address_compliance_mode(parser_options_.get(), GMIME_RFC_COMPLIANCE_LOOSE);
  g_mime_parser_options_set_parameter_compliance_mode(parser_options_.get(), GMIME_RFC_COMPLIANCE_LOOSE);
  g_mime_parser_options_set_allow_addresses_without_domain(parser_options_.get(), TRUE);
  if (raw_.size() > pol_.limit.max_message_size) {
    hold("limit:message-size");
    auto fields = read_header_block_only(raw_, pol_, parser_options_.get());
    return finish_held(fields ? &*fields : nullptr);
  }
  // The header block limit is checked on the raw bytes before GMime allocates for it.
  {
    std::size_t end = raw_.find("\n\n");
    std::size_t end_crlf = raw_.find("\r\n\r\n");
    std::size_t header_end = std::min(end, end_crlf);
    if (header_end == std::string_view::npos) header_end = raw_.size();
    if (header_end > pol_.limit.max_header_size) {
      hold("limit:header-size");
      return finish_held(nullptr);
    }
  }
  // Old Mac line ends (CR only) would make the whole message one header line; read them as
  // line breaks, as mail programs do, and note it.
  std::string normalised;
  std::string_view input = raw_;
  if (raw_.find('\n') == std::string_view::npos && raw_.find('\r') != std::string_view::npos) {
    normalised.assign(raw_);
    std::replace(normalised.begin(), normalised.end(), '\r', '\n');
    input = normalised;
    warn("bare-cr-line-ends");
  }

  g_mime_parser_options_set_warning_callback(parser_options_.get(), collect_warning, &warnings_);

  // GMime reads the caller's buffer in place (a non-owning byte array): copying a 25 MB message
  // into a stream would double the engine's peak memory. The parser only reads.
  GByteArray* view = g_byte_array_new();
  view->data = reinterpret_cast<guint8*>(const_cast<char*>(input.data()));
  view->len = static_cast<guint>(input.size());
  auto stream = adopt(g_mime_stream_mem_new_with_byte_array(view));
  g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream.get()), FALSE);
  struct view_release {
    GByteArray* v;
    ~view_release() { g_byte_array_free(v, FALSE); }  // frees the header only, never the data
  } release{view};
  auto parser = adopt(g_mime_parser_new_with_stream(stream.get()));
  g_mime_parser_set_format(parser.get(), GMIME_FORMAT_MESSAGE);
  auto message = adopt(g_mime_parser_construct_message(parser.get(), parser_options_.get()));
  // Later uses of the options (address and header parsing) must not append to warnings_ from
  // inside the walk: the map from offsets to parts is only valid for the parse.
  if (!message || !g_mime_message_get_mime_part(message.get())) {
    hold("unparseable");
    return finish_held(nullptr);
  }
  g_mime_parser_options_set_warning_callback(parser_options_.get(), nullptr, nullptr);

  header_charset_hint_ = first_text_charset(g_mime_message_get_mime_part(message.get()));
  header_fields fields = read_header_fields(message.get(), parser_options_.get(), header_charset_hint_);
  for (auto& w : fields.warnings) warn(w);

  analyse_warnings(message.get());
  if (holding()) return finish_held(&fields);

  GMimeObject* top = g_mime_message_get_mime_part(message.get());
  sink body;
  walk(top, GMIME_IS_MULTIPART(top) ? std::string() : std::string("1"), 0, body, walk_mode::show, false);
  if (holding()) return finish_held(&fields);

  // Verdict: clean only when every leaf was shown as the text it already was.
  bool changed = blob_count_ > 0 || summary_.signature_removed || summary_.links_defanged > 0 ||
                 summary_.links_removed > 0 || summary_.charset_guessed;
  int removed = 0;
  for (auto& p : rep_.parts) {
    if (p.action == part_action::quarantined || p.action == part_action::discarded) {
      if (p.reason != "empty") changed = true;
      if (p.reason != "alternative-not-shown" && p.reason != "empty") ++removed;
    }
    if (p.action == part_action::converted) changed = true;
  }
  if (summary_.html_converted) rep_.actions.push_back("html-to-text");
  if (removed > 0) rep_.actions.push_back("attachments-removed=" + std::to_string(removed));
  if (blob_count_ > 0) rep_.actions.push_back("encoded-blocks-removed=" + std::to_string(blob_count_));
  if (summary_.signature_removed) rep_.actions.push_back("signature-removed");
  if (summary_.links_defanged > 0) rep_.actions.push_back("links=defanged");
  if (summary_.links_removed > 0) rep_.actions.push_back("links-removed=" + std::to_string(summary_.links_removed));
  if (summary_.phishing_cues > 0) rep_.actions.push_back("phishing-cues=" + std::to_string(summary_.phishing_cues));
  if (summary_.charset_guessed) rep_.actions.push_back("charset-detected");
  for (auto& p : rep_.parts)
    if (p.reason == "alternative-not-shown") {
      rep_.actions.push_back("alternative-dropped");
      break;
    }

  rep_.result = changed ? verdict::sanitized : verdict::clean;
  if (changed) {
    rep_.quarantine_id = req_.quarantine_id;
    for (auto& a : rep_.actions) rep_.reasons.push_back(a);
  } else {
    rep_.actions = {"none"};
    quarantine_.clear();
  }

  std::string text = std::move(body.text);
  if (text.empty())
    text = pol_.notice_language == config::language::ja ? "（本文はありません）\n" : "(no text body)\n";
  if (changed) text = render_sanitized_notice(pol_, rep_, summary_) + text;

  output_spec spec;
  spec.fields = &fields;
  spec.held = false;
  spec.body = std::move(text);
  spec.rep = &rep_;
  spec.received = req_.received_by;
  std::string out = build_output_message(spec, pol_);
  if (out.empty()) {
    hold("internal:output-invariant");
    return finish_held(&fields);
  }
  result r;
  r.output = std::move(out);
  if (changed) r.body_text = std::move(spec.body);  // only stored items need it
  r.headers = summarize_headers(fields);
  r.rep = std::move(rep_);
  r.quarantine = std::move(quarantine_);
  r.quarantine_original = changed;
  return r;
}

}  // namespace

result sanitize_message(std::string_view raw, const config::policy& pol, const request& req) {
  try {
    message_sanitizer s(raw, pol, req);
    return s.run();
  } catch (const std::exception&) {
    // Only allocation failure can get here; fail closed with the smallest possible notice.
    result r;
    r.rep.result = verdict::held;
    r.rep.reasons = {"internal:exception"};
    r.rep.quarantine_id = req.quarantine_id;
    r.output = minimal_hold_message(pol, req.quarantine_id);
    r.quarantine_original = true;
    return r;
  }
}

}  // namespace mukai::sanitize
