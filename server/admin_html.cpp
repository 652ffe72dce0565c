// The web console's HTML: escaping, strings in Japanese and English, pages; see admin_html.hpp.
#include "server/admin_html.hpp"

#include <time.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <span>

#include "sanitizers/report_words.hpp"

namespace mukai::server {

namespace {

constexpr std::string_view replacement = "\xEF\xBF\xBD";  // U+FFFD

// Characters that change the display order of the text around them (Unicode bidi controls), and the
// line/paragraph separators U+2028/2029 (invisible line breaks).
bool is_bidi_or_invisible(char32_t c) noexcept {
  return c == 0x061C || c == 0x200E || c == 0x200F || (c >= 0x2028 && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069);
}

// Decodes one UTF-8 sequence at s[i]; returns its length, or 0 when invalid (overlong, surrogate,
// beyond U+10FFFF, truncated).
std::size_t decode_utf8(std::string_view s, std::size_t i, char32_t& out) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  char32_t c = 0, min = 0;
  if (b0 < 0x80) {
    out = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, c = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, c = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, c = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    c = (c << 6) | (b & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
  out = c;
  return len;
}

struct html_builder {
  std::string out;
  html_builder& raw(std::string_view s) {
    out += s;
    return *this;
  }
  html_builder& text(std::string_view s) {
    out += html_escape(s);
    return *this;
  }
  html_builder& num(std::uint64_t n) {
    out += std::to_string(n);
    return *this;
  }
};

msg status_msg(item_status s) noexcept {
  switch (s) {
    case item_status::held: return msg::status_held;
    case item_status::released: return msg::status_released;
    case item_status::deleted: return msg::status_deleted;
    case item_status::expired: return msg::status_expired;
  }
  return msg::status_held;
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s += sep;
    s += v[i];
  }
  return s;
}

std::string with_param(std::string_view self, std::string_view key, std::string_view value) {
  std::string u(self);
  u += u.find('?') == std::string::npos ? '?' : '&';
  u += key;
  u += '=';
  u += url_component(value);
  return u;
}

void page_head(html_builder& b, const page_frame& f, msg title) {
  const ui_lang other = f.lang == ui_lang::ja ? ui_lang::en : ui_lang::ja;
  b.raw("<!DOCTYPE html>\n<html lang=\"").raw(to_string(f.lang)).raw("\"><head><meta charset=\"utf-8\">")
      .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>")
      .text(tr(f.lang, title)).raw(" - ").text(tr(f.lang, msg::title))
      .raw("</title><link rel=\"stylesheet\" href=\"/static/admin.css\"></head><body><header><a class=\"brand\" href=\"/\">")
      .text(tr(f.lang, msg::title)).raw("</a><nav>");
  if (!f.user.empty()) {
    b.raw("<span class=\"who\">").text(f.user).raw(" (")
        .text(tr(f.lang, f.role == admin_role::operator_ ? msg::role_operator : msg::role_viewer)).raw(")</span>");
  }
  b.raw("<a class=\"lang\" href=\"").text(with_param(f.self.empty() ? "/" : f.self, "lang", to_string(other)))
      .raw("\">").raw(other == ui_lang::ja ? "日本語" : "English").raw("</a>");
  if (!f.user.empty()) {
    b.raw("<form method=\"post\" action=\"/logout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"")
        .text(f.csrf).raw("\"><button type=\"submit\">").text(tr(f.lang, msg::logout)).raw("</button></form>");
  }
  b.raw("</nav></header><main>");
}

void page_tail(html_builder& b) { b.raw("</main></body></html>\n"); }

void input_field(html_builder& b, const page_frame& f, std::string_view name, msg label, std::string_view value,
                 std::string_view type = "text") {
  b.raw("<label>").text(tr(f.lang, label)).raw(" <input type=\"").raw(type).raw("\" name=\"").raw(name)
      .raw("\" value=\"").text(value).raw("\" maxlength=\"200\"></label> ");
}

void csrf_field(html_builder& b, const page_frame& f) {
  b.raw("<input type=\"hidden\" name=\"csrf\" value=\"").text(f.csrf).raw("\">");
}

std::optional<sanitize::token_words> token_words_of(token_kind k, std::string_view t) noexcept {
  switch (k) {
    case token_kind::reason: return sanitize::reason_words(t);
    case token_kind::flag: return sanitize::flag_words(t);
    case token_kind::part_action: return sanitize::part_action_words(t);
    case token_kind::verdict: return sanitize::verdict_words(t);
    case token_kind::history_action:
    case token_kind::history_result: break;
  }
  using service_token = std::pair<std::string_view, msg>;
  static constexpr service_token actions[] = {{"release", msg::release}, {"delete", msg::remove}, {"purge", msg::purge}};
  static constexpr service_token results[] = {
      {"ok", msg::result_ok}, {"refused", msg::result_refused}, {"failed", msg::result_failed}};
  for (const auto& [token, m] : k == token_kind::history_action ? std::span<const service_token>(actions)
                                                                 : std::span<const service_token>(results))
    if (token == t) return sanitize::token_words{tr(ui_lang::ja, m), tr(ui_lang::en, m), {}};
  return std::nullopt;
}

// The label, with the raw token visible beside it (with_token) or as the title; an unknown token once,
// as the token.
void token_html(html_builder& b, ui_lang l, token_kind k, std::string_view t, bool with_token) {
  if (!token_words_of(k, t)) {
    b.raw("<code class=\"tok\">").text(t).raw("</code>");
  } else if (with_token) {
    b.raw("<span class=\"label\">").text(token_label(l, k, t)).raw("</span> <code class=\"tok\">").text(t)
        .raw("</code>");
  } else {
    b.raw("<span class=\"label\" title=\"").text(t).raw("\">").text(token_label(l, k, t)).raw("</span>");
  }
}

void tokens_html(html_builder& b, ui_lang l, token_kind k, const std::vector<std::string>& tokens, bool with_token) {
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (i) b.raw(l == ui_lang::ja ? "、" : ", ");
    token_html(b, l, k, tokens[i], with_token);
  }
}

bool can_act(const index_item& item) noexcept {
  return item.status == item_status::held || item.status == item_status::released;
}

struct msg_text {
  std::string_view ja, en;
};

// In the order of enum msg.
constexpr msg_text texts[] = {
    {"mukai 隔離メール管理", "mukai quarantine"},
    {"ログイン", "Log in"},
    {"ユーザー名", "User"},
    {"パスワード", "Password"},
    {"ログイン", "Log in"},
    {"ユーザー名またはパスワードが違います。", "Wrong user name or password."},
    {"ログインの失敗が続いたため、しばらく待ってから再度お試しください。",
     "Too many failed logins; wait a while and try again."},
    {"ログアウト", "Log out"},
    {"隔離メール一覧", "Quarantined mail"},
    {"検索", "Search"},
    {"差出人・宛先・件名・ファイル名・ID", "sender, recipient, subject, filename, ID"},
    {"状態", "Status"},
    {"すべて", "any"},
    {"保留中", "held"},
    {"解放済み", "released"},
    {"削除済み", "deleted"},
    {"期限切れ", "expired"},
    {"開始日", "Since"},
    {"終了日", "Until"},
    {"差出人", "Sender"},
    {"宛先", "Recipient"},
    {"件名", "Subject"},
    {"理由", "Reason"},
    {"絞り込む", "Filter"},
    {"件", "items"},
    {"該当するメールはありません。", "No matching items."},
    {"前へ", "Previous"},
    {"次へ", "Next"},
    {"受信日時", "Received"},
    {"差出人 (From)", "From"},
    {"宛先 (To)", "To"},
    {"サイズ", "Size"},
    {"判定", "Verdict"},
    {"パート", "Parts"},
    {"ID", "ID"},
    {"詳細", "Details"},
    {"エンベロープ", "Envelope"},
    {"エンベロープ差出人", "Envelope sender"},
    {"エンベロープ宛先", "Envelope recipients"},
    {"ヘッダー", "Headers"},
    {"Message-ID", "Message-ID"},
    {"隔離・保留の理由", "Reasons"},
    {"ファイル名", "Filename"},
    {"宣言された形式", "Declared type"},
    {"検出された形式", "Detected type"},
    {"SHA-256", "SHA-256"},
    {"処置", "Action"},
    {"受信者に届いた無害化テキスト", "Sanitized text the recipients got"},
    {"保存されていません。", "Not stored."},
    {"履歴", "History"},
    {"日時", "When"},
    {"実施者", "Who"},
    {"結果", "Result"},
    {"解放", "Release"},
    {"削除", "Delete"},
    {"このメールの原本（無害化前）を配送します。よろしいですか？",
     "Deliver the original (unsanitized) message? Please confirm."},
    {"このメールの隔離ファイルを削除します。元に戻せません。よろしいですか？",
     "Delete this item's files? This cannot be undone. Please confirm."},
    {"別の宛先に配送（任意）", "Deliver to other recipients (optional)"},
    {"空欄なら元の宛先。複数はカンマ区切り。", "Empty: the original recipients. Several: separate with commas."},
    {"このメールは全体を保留したため、添付ファイルなどの中身は検査されていません（暗号化、構造の異常、制限超過など）。"
     "解放禁止の設定（実行ファイルなど）も確認できません。原本を確認してから解放してください。",
     "This message was held whole, so its parts were never inspected (encrypted, malformed, over a limit...). "
     "The release policy (e.g. no executables) cannot be checked. Check the original before releasing it."},
    {"原本を確認し、内容が安全であることを確かめました", "I have checked the original and it is safe"},
    {"実行する", "Confirm"},
    {"キャンセル", "Cancel"},
    {"戻る", "Back"},
    {"この操作の権限がありません。", "You are not allowed to do this."},
    {"見つかりません。", "Not found."},
    {"リクエストが正しくありません。", "Bad request."},
    {"フォームの有効期限が切れたか、不正なリクエストです。もう一度操作してください。",
     "The form expired or the request was forged; please try again."},
    {"完了しました", "Done"},
    {"ポリシーにより拒否されました", "Refused by policy"},
    {"失敗しました", "Failed"},
    {"閲覧者", "viewer"},
    {"操作者", "operator"},
    {"言語", "Language"},
    {"原本の保存", "Original stored"},
    {"あり", "yes"},
    {"なし", "no"},
    {"統計", "Statistics"},
    {"合計", "Total"},
    {"最も古い保留", "Oldest held"},
    {"隔離・削除されたファイル", "Removed files"},
    {"検出された特徴", "Flags"},
    {"保存期間満了による削除", "purged after retention"},
    {"成功", "ok"},
    {"拒否", "refused"},
    {"失敗", "failed"},
};
static_assert(std::size(texts) == static_cast<std::size_t>(msg::count_));

}  // namespace

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  std::size_t i = 0;
  while (i < s.size()) {
    char32_t c = 0;
    const std::size_t len = decode_utf8(s, i, c);
    if (len == 0) {
      out += replacement;
      ++i;
      continue;
    }
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || (c >= 0x7F && c <= 0x9F) || is_bidi_or_invisible(c)) {
      out += replacement;
    } else {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out.append(s.substr(i, len));
      }
    }
    i += len;
  }
  return out;
}

std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    char32_t c = 0;
    const std::size_t len = decode_utf8(s, i, c);
    if (len == 0) {
      out += replacement;
      ++i;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

std::string url_component(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

ui_lang parse_ui_lang(std::string_view s) noexcept { return s == "en" ? ui_lang::en : ui_lang::ja; }
const char* to_string(ui_lang l) noexcept { return l == ui_lang::en ? "en" : "ja"; }

std::string_view tr(ui_lang l, msg m) noexcept {
  const auto& t = texts[static_cast<std::size_t>(m)];
  return l == ui_lang::en ? t.en : t.ja;
}

std::string token_label(ui_lang l, token_kind k, std::string_view token) {
  const auto w = token_words_of(k, token);
  if (!w) return std::string(token);
  std::string label(l == ui_lang::en ? w->en : w->ja);
  if (!w->rest.empty()) {
    label += " (";
    label += w->rest;
    label += ')';
  }
  return label;
}

std::string list_query::to_query_string(std::size_t page_no) const {
  std::string s;
  const auto add = [&s](std::string_view k, std::string_view v) {
    if (v.empty()) return;
    if (!s.empty()) s += '&';
    s += k;
    s += '=';
    s += url_component(v);
  };
  add("q", text);
  add("status", status);
  add("since", since);
  add("until", until);
  add("sender", sender);
  add("recipient", recipient);
  add("subject", subject);
  add("reason", reason);
  if (page_no > 1) add("page", std::to_string(page_no));
  return s;
}

std::string format_time(std::int64_t t) {
  const time_t tt = static_cast<time_t>(t);
  struct tm tm {};
  if (!localtime_r(&tt, &tm)) return std::to_string(t);
  char buf[64];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %z", &tm);
  return std::string(buf, n);
}

std::optional<std::int64_t> parse_local_time(std::string_view s, bool end_of_day) {
  // YYYY-MM-DD, then optionally T or space and HH:MM[:SS]
  const auto num = [&s](std::size_t pos, std::size_t len, int& out) {
    if (pos + len > s.size()) return false;
    const auto [p, ec] = std::from_chars(s.data() + pos, s.data() + pos + len, out);
    return ec == std::errc{} && p == s.data() + pos + len;
  };
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (s.size() < 10 || !num(0, 4, y) || s[4] != '-' || !num(5, 2, mo) || s[7] != '-' || !num(8, 2, d))
    return std::nullopt;
  bool date_only = true;
  if (s.size() > 10) {
    if ((s[10] != 'T' && s[10] != ' ') || !num(11, 2, h) || s.size() < 16 || s[13] != ':' || !num(14, 2, mi))
      return std::nullopt;
    if (s.size() == 19) {
      if (s[16] != ':' || !num(17, 2, sec)) return std::nullopt;
    } else if (s.size() != 16) {
      return std::nullopt;
    }
    date_only = false;
  }
  if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
    return std::nullopt;
  struct tm tm {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d + (date_only && end_of_day ? 1 : 0);
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  tm.tm_isdst = -1;
  const time_t t = mktime(&tm);
  if (t == static_cast<time_t>(-1)) return std::nullopt;
  return static_cast<std::int64_t>(t);
}

std::string render_login_page(const page_frame& f, std::string_view login_token, std::string_view error,
                              std::string_view user_value) {
  html_builder b;
  page_head(b, f, msg::login);
  b.raw("<h1>").text(tr(f.lang, msg::login)).raw("</h1>");
  if (!error.empty()) b.raw("<p class=\"error\" role=\"alert\">").text(error).raw("</p>");
  b.raw("<form method=\"post\" action=\"/login\" class=\"login\"><input type=\"hidden\" name=\"login_token\" value=\"")
      .text(login_token).raw("\"><label>").text(tr(f.lang, msg::user))
      .raw(" <input type=\"text\" name=\"user\" autocomplete=\"username\" required maxlength=\"100\" value=\"")
      .text(user_value).raw("\"></label><label>").text(tr(f.lang, msg::password))
      .raw(" <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required maxlength=\"1000\"></label>")
      .raw("<button type=\"submit\">").text(tr(f.lang, msg::login_button)).raw("</button></form>");
  page_tail(b);
  return std::move(b.out);
}

std::string render_list_page(const page_frame& f, const list_query& q, const item_page& page, std::size_t page_size,
                             std::string_view error) {
  html_builder b;
  page_head(b, f, msg::list);
  b.raw("<h1>").text(tr(f.lang, msg::list)).raw("</h1>");
  b.raw("<form method=\"get\" action=\"/\" class=\"filters\"><div class=\"searchrow\"><input type=\"search\" name=\"q\" value=\"")
      .text(q.text).raw("\" placeholder=\"").text(tr(f.lang, msg::search_hint))
      .raw("\" maxlength=\"200\" aria-label=\"").text(tr(f.lang, msg::search)).raw("\"><button type=\"submit\">")
      .text(tr(f.lang, msg::search)).raw("</button></div><div class=\"filterrow\"><label>").text(tr(f.lang, msg::status))
      .raw(" <select name=\"status\">");
  const std::pair<const char*, msg> statuses[] = {{"", msg::status_any},
                                                  {"held", msg::status_held},
                                                  {"released", msg::status_released},
                                                  {"deleted", msg::status_deleted},
                                                  {"expired", msg::status_expired}};
  for (const auto& [value, label] : statuses) {
    b.raw("<option value=\"").raw(value).raw(q.status == value ? "\" selected>" : "\">").text(tr(f.lang, label))
        .raw("</option>");
  }
  b.raw("</select></label> ");
  input_field(b, f, "since", msg::since, q.since, "date");
  input_field(b, f, "until", msg::until, q.until, "date");
  input_field(b, f, "sender", msg::sender, q.sender);
  input_field(b, f, "recipient", msg::recipient, q.recipient);
  input_field(b, f, "subject", msg::subject, q.subject);
  input_field(b, f, "reason", msg::reason, q.reason);
  b.raw("<button type=\"submit\">").text(tr(f.lang, msg::filter_button)).raw("</button></div></form>");
  if (!error.empty()) b.raw("<p class=\"error\" role=\"alert\">").text(error).raw("</p>");

  const std::size_t first = (q.page - 1) * page_size;
  b.raw("<p class=\"count\">").num(page.total).raw(" ").text(tr(f.lang, msg::results));
  if (!page.items.empty()) b.raw(" (").num(first + 1).raw("–").num(first + page.items.size()).raw(")");
  b.raw("</p>");
  if (page.items.empty()) {
    b.raw("<p>").text(tr(f.lang, msg::no_results)).raw("</p>");
  } else {
    b.raw("<table class=\"items\"><thead><tr><th>").text(tr(f.lang, msg::received)).raw("</th><th>")
        .text(tr(f.lang, msg::status)).raw("</th><th>").text(tr(f.lang, msg::from)).raw("</th><th>")
        .text(tr(f.lang, msg::rcpt_to)).raw("</th><th>").text(tr(f.lang, msg::subject)).raw("</th><th>")
        .text(tr(f.lang, msg::removed_files)).raw("</th><th>").text(tr(f.lang, msg::reasons)).raw("</th></tr></thead><tbody>");
    for (const auto& it : page.items) {
      const std::string href = "/item/" + url_component(it.id);
      b.raw("<tr><td class=\"time\"><a href=\"").text(href).raw("\">").text(format_time(it.received))
          .raw("</a></td><td><span class=\"status ").raw(to_string(it.status)).raw("\">")
          .text(tr(f.lang, status_msg(it.status))).raw("</span></td><td>")
          .text(it.from.empty() ? it.mail_from : it.from).raw("</td><td>").text(join(it.rcpt_to, ", "))
          .raw("</td><td class=\"subject\"><a href=\"").text(href).raw("\">").text(it.subject).raw("</a></td><td>");
      for (const auto& p : it.parts) {
        if (p.action == "quarantined" || p.action == "discarded")
          b.raw("<span class=\"file\">").text(p.filename.empty() ? p.detected_type : p.filename).raw("</span> ");
      }
      b.raw("</td><td class=\"reasons\">");
      tokens_html(b, f.lang, token_kind::reason, it.reasons, false);
      b.raw("</td></tr>");
    }
    b.raw("</tbody></table>");
  }
  const std::size_t pages = page_size == 0 ? 1 : (page.total + page_size - 1) / page_size;
  b.raw("<nav class=\"paging\">");
  if (q.page > 1) b.raw("<a rel=\"prev\" href=\"/?").text(q.to_query_string(q.page - 1)).raw("\">").text(tr(f.lang, msg::prev)).raw("</a> ");
  if (q.page < pages) b.raw("<a rel=\"next\" href=\"/?").text(q.to_query_string(q.page + 1)).raw("\">").text(tr(f.lang, msg::next)).raw("</a>");
  b.raw("</nav>");
  page_tail(b);
  return std::move(b.out);
}

std::string render_detail_page(const page_frame& f, const index_item& it, const std::optional<std::string>& text,
                               const std::map<std::string, std::vector<std::string>>& part_flags) {
  html_builder b;
  page_head(b, f, msg::detail);
  b.raw("<p><a href=\"/\">").text(tr(f.lang, msg::list)).raw("</a></p><h1 class=\"subject\">").text(it.subject)
      .raw("</h1>");
  const auto row = [&](msg label, std::string_view value) {
    b.raw("<tr><th>").text(tr(f.lang, label)).raw("</th><td>").text(value).raw("</td></tr>");
  };
  b.raw("<section><h2>").text(tr(f.lang, msg::envelope)).raw("</h2><table class=\"kv\">");
  row(msg::id, it.id);
  b.raw("<tr><th>").text(tr(f.lang, msg::status)).raw("</th><td><span class=\"status ").raw(to_string(it.status))
      .raw("\">").text(tr(f.lang, status_msg(it.status))).raw("</span></td></tr>");
  row(msg::received, format_time(it.received));
  row(msg::mail_from, it.mail_from.empty() ? "<>" : it.mail_from);
  row(msg::rcpt_to, join(it.rcpt_to, ", "));
  row(msg::size, std::to_string(it.size));
  b.raw("<tr><th>").text(tr(f.lang, msg::verdict)).raw("</th><td>");
  token_html(b, f.lang, token_kind::verdict, it.verdict, true);
  b.raw("</td></tr>");
  row(msg::original_stored, tr(f.lang, it.original_stored ? msg::yes : msg::no));
  b.raw("</table></section>");

  b.raw("<section><h2>").text(tr(f.lang, msg::headers)).raw("</h2><table class=\"kv\">");
  row(msg::from, it.from);
  row(msg::to, it.to);
  row(msg::subject, it.subject);
  row(msg::message_id, it.message_id);
  b.raw("</table></section>");

  b.raw("<section><h2>").text(tr(f.lang, msg::reasons)).raw("</h2><ul class=\"reasons\">");
  for (const auto& r : it.reasons) {
    b.raw("<li>");
    token_html(b, f.lang, token_kind::reason, r, true);
    b.raw("</li>");
  }
  b.raw("</ul></section>");

  b.raw("<section><h2>").text(tr(f.lang, msg::parts)).raw("</h2><table class=\"parts\"><thead><tr><th>#</th><th>")
      .text(tr(f.lang, msg::filename)).raw("</th><th>").text(tr(f.lang, msg::declared_type)).raw("</th><th>")
      .text(tr(f.lang, msg::detected_type)).raw("</th><th>").text(tr(f.lang, msg::size)).raw("</th><th>")
      .text(tr(f.lang, msg::sha256)).raw("</th><th>").text(tr(f.lang, msg::action)).raw("</th><th>")
      .text(tr(f.lang, msg::reason)).raw("</th><th>").text(tr(f.lang, msg::flags)).raw("</th></tr></thead><tbody>");
  for (const auto& p : it.parts) {
    b.raw("<tr><td>").text(p.path).raw("</td><td class=\"file\">").text(p.filename).raw("</td><td>")
        .text(p.declared_type).raw("</td><td>").text(p.detected_type).raw("</td><td class=\"num\">").num(p.size)
        .raw("</td><td class=\"hash\">").text(p.sha256).raw("</td><td>");
    token_html(b, f.lang, token_kind::part_action, p.action, true);
    b.raw("</td><td>");
    if (!p.reason.empty()) token_html(b, f.lang, token_kind::reason, p.reason, true);
    b.raw("</td><td>");
    if (const auto fl = part_flags.find(p.path); fl != part_flags.end())
      tokens_html(b, f.lang, token_kind::flag, fl->second, true);
    b.raw("</td></tr>");
  }
  b.raw("</tbody></table></section>");

  if (f.role == admin_role::operator_ && can_act(it)) {
    const std::string base = "/item/" + url_component(it.id);
    b.raw("<section class=\"actions\"><a class=\"button\" id=\"release\" href=\"").text(base + "/release").raw("\">")
        .text(tr(f.lang, msg::release)).raw("</a> <a class=\"button danger\" id=\"delete\" href=\"")
        .text(base + "/delete").raw("\">").text(tr(f.lang, msg::remove)).raw("</a></section>");
  }

  b.raw("<section><h2>").text(tr(f.lang, msg::sanitized_text)).raw("</h2>");
  if (text)
    b.raw("<pre class=\"body\">").text(*text).raw("</pre>");
  else
    b.raw("<p>").text(tr(f.lang, msg::not_stored)).raw("</p>");
  b.raw("</section>");

  b.raw("<section><h2>").text(tr(f.lang, msg::history)).raw("</h2><table class=\"history\"><thead><tr><th>")
      .text(tr(f.lang, msg::when)).raw("</th><th>").text(tr(f.lang, msg::who)).raw("</th><th>")
      .text(tr(f.lang, msg::action)).raw("</th><th>").text(tr(f.lang, msg::result)).raw("</th><th></th></tr></thead><tbody>");
  for (const auto& h : it.history) {
    b.raw("<tr><td>").text(format_time(h.at)).raw("</td><td>").text(h.who).raw("</td><td>");
    token_html(b, f.lang, token_kind::history_action, h.action, true);
    b.raw("</td><td>");
    token_html(b, f.lang, token_kind::history_result, h.result, true);
    b.raw("</td><td>").text(h.detail).raw("</td></tr>");
  }
  b.raw("</tbody></table></section>");
  page_tail(b);
  return std::move(b.out);
}

std::string render_confirm_page(const page_frame& f, const index_item& it, confirm_kind kind) {
  html_builder b;
  const bool release = kind != confirm_kind::remove;
  page_head(b, f, release ? msg::release : msg::remove);
  const std::string base = "/item/" + url_component(it.id);
  b.raw("<h1>").text(tr(f.lang, release ? msg::release : msg::remove)).raw("</h1><table class=\"kv\">");
  b.raw("<tr><th>").text(tr(f.lang, msg::id)).raw("</th><td>").text(it.id).raw("</td></tr><tr><th>")
      .text(tr(f.lang, msg::subject)).raw("</th><td>").text(it.subject).raw("</td></tr><tr><th>")
      .text(tr(f.lang, msg::rcpt_to)).raw("</th><td>").text(join(it.rcpt_to, ", ")).raw("</td></tr></table>");
  b.raw("<p class=\"warn\">").text(tr(f.lang, release ? msg::release_confirm : msg::remove_confirm)).raw("</p>");
  b.raw("<form method=\"post\" action=\"").text(base + (release ? "/release" : "/delete")).raw("\" class=\"confirm\">");
  csrf_field(b, f);
  b.raw("<input type=\"hidden\" name=\"confirm\" value=\"yes\">");
  if (kind == confirm_kind::release_unverified) {
    b.raw("<p class=\"warn\" id=\"unverified-warning\">").text(tr(f.lang, msg::release_unverified))
        .raw("</p><label><input type=\"checkbox\" name=\"unverified\" value=\"yes\" id=\"unverified\"> ")
        .text(tr(f.lang, msg::release_unverified_box)).raw("</label>");
  }
  if (release) {
    b.raw("<label>").text(tr(f.lang, msg::release_to)).raw(" <input type=\"text\" name=\"to\" maxlength=\"2000\"></label><p class=\"hint\">")
        .text(tr(f.lang, msg::release_to_hint)).raw("</p>");
  }
  b.raw("<button type=\"submit\" id=\"confirm\"").raw(release ? "" : " class=\"danger\"").raw(">")
      .text(tr(f.lang, msg::confirm)).raw("</button> <a href=\"").text(base).raw("\">").text(tr(f.lang, msg::cancel))
      .raw("</a></form>");
  page_tail(b);
  return std::move(b.out);
}

std::string render_result_page(const page_frame& f, std::string_view item_id, msg heading, std::string_view message) {
  html_builder b;
  page_head(b, f, heading);
  b.raw("<h1>").text(tr(f.lang, heading)).raw("</h1><p class=\"result\" role=\"status\">").text(message)
      .raw("</p><p><a href=\"/item/").text(url_component(item_id)).raw("\">").text(tr(f.lang, msg::back))
      .raw("</a> · <a href=\"/\">").text(tr(f.lang, msg::list)).raw("</a></p>");
  page_tail(b);
  return std::move(b.out);
}

std::string render_error_page(const page_frame& f, msg heading, std::string_view detail) {
  html_builder b;
  page_head(b, f, heading);
  b.raw("<h1>").text(tr(f.lang, heading)).raw("</h1>");
  if (!detail.empty()) b.raw("<p>").text(detail).raw("</p>");
  b.raw("<p><a href=\"/\">").text(tr(f.lang, msg::list)).raw("</a></p>");
  page_tail(b);
  return std::move(b.out);
}

std::string_view admin_stylesheet() noexcept {
  return R"css(:root{--fg:#1d2330;--muted:#5b6577;--line:#d5dae3;--bg:#f6f7f9;--accent:#1f5fbf;--danger:#b3261e;--ok:#1e7b34}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 "Noto Sans JP","Hiragino Sans","Yu Gothic UI",Meiryo,system-ui,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;justify-content:space-between;align-items:center;padding:.5rem 1rem;background:#223049;color:#fff}
header a{color:#fff}
.brand{font-weight:bold;text-decoration:none}
nav{display:flex;gap:1rem;align-items:center}
main{padding:1rem;max-width:1400px;margin:0 auto}
h1{font-size:1.3rem;margin:.5rem 0 1rem;overflow-wrap:anywhere}
h2{font-size:1.05rem;margin:1.2rem 0 .4rem;border-bottom:1px solid var(--line)}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}
thead th{background:#eef1f6}
table.kv th{width:14rem;background:#eef1f6}
td.hash{font-family:monospace;font-size:12px}
td.num{text-align:right}
.time{white-space:nowrap}
pre.body{white-space:pre-wrap;overflow-wrap:anywhere;background:#fff;border:1px solid var(--line);padding:.6rem;max-height:40rem;overflow:auto}
form.filters{background:#fff;border:1px solid var(--line);padding:.6rem;margin-bottom:.8rem}
.searchrow{display:flex;gap:.5rem;margin-bottom:.5rem}
.searchrow input{flex:1;font-size:1rem;padding:.3rem}
.filterrow{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}
.filterrow input{width:10rem}
form.login{display:flex;flex-direction:column;gap:.6rem;max-width:22rem;background:#fff;padding:1rem;border:1px solid var(--line)}
form.login input{width:100%}
form.inline{display:inline}
button,.button{display:inline-block;padding:.3rem .9rem;border:1px solid var(--accent);background:var(--accent);color:#fff;border-radius:3px;text-decoration:none;cursor:pointer;font:inherit}
header button{background:transparent;border-color:#fff}
.danger{background:var(--danger);border-color:var(--danger)}
.actions{margin:1rem 0}
.error{color:var(--danger);font-weight:bold}
.warn{font-weight:bold}
.status{display:inline-block;padding:0 .4rem;border-radius:3px;background:#e3e7ee;white-space:nowrap}
.status.held{background:#fde7c4}
.status.released{background:#d5f0dc;color:var(--ok)}
.status.deleted,.status.expired{background:#eee;color:var(--muted)}
span.file{display:inline-block;font-family:monospace;overflow-wrap:anywhere}
code.tok{font-family:monospace;font-size:11px;color:var(--muted);overflow-wrap:anywhere}
td.file{font-family:monospace}
.paging{margin:.8rem 0;display:flex;gap:1rem}
.count,.hint{color:var(--muted)}
)css";
}

}  // namespace mukai::server
