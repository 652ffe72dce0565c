// Notice texts. The wording is for municipal staff who are not mail experts: say what was
// removed, that it is kept safe, and how to ask for it (the quarantine ID and the contact).
#include "sanitizers/notice.hpp"

#include <utility>

#include "sanitizers/display_safe.hpp"
#include "sanitizers/report_words.hpp"

namespace mukai::sanitize {

std::string group_thousands(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  int count = 0;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (count != 0 && count % 3 == 0) out += ',';
    out += *it;
    ++count;
  }
  return std::string(out.rbegin(), out.rend());
}

std::string fill_template(std::string_view tmpl, const std::vector<std::pair<std::string, std::string>>& values) {
  std::string out;
  out.reserve(tmpl.size() + 256);
  std::size_t pos = 0;
  while (pos < tmpl.size()) {
    std::size_t open = tmpl.find('{', pos);
    if (open == std::string_view::npos) break;
    std::size_t close = tmpl.find('}', open + 1);
    if (close == std::string_view::npos) break;
    std::string_view name = tmpl.substr(open + 1, close - open - 1);
    out.append(tmpl.substr(pos, open - pos));
    bool found = false;
    for (auto& [k, v] : values) {
      if (k == name) {
        out += v;  // substituted values are never re-scanned: a subject cannot inject placeholders
        found = true;
        break;
      }
    }
    if (!found) out.append(tmpl.substr(open, close - open + 1));
    pos = close + 1;
  }
  out.append(tmpl.substr(pos));
  return out;
}

namespace {

// Flags in words: Japanese from the shared vocabulary; English notices keep the tokens, which
// English-reading administrators grep for.
std::string flags_text(const std::vector<std::string>& flags, config::language lang) {
  std::string out;
  for (auto& f : flags) {
    if (!out.empty()) out += lang == config::language::ja ? "、" : ", ";
    const auto w = lang == config::language::ja ? flag_words(f) : std::nullopt;
    out += w ? w->ja : std::string_view(f);
  }
  return out;
}

std::string action_text(part_action a, config::language lang) {
  const auto w = part_action_words(to_string(a));
  if (!w) return {};
  return std::string(lang == config::language::ja ? w->ja : w->en);
}

constexpr std::string_view rule_line = "======================================================================";

}  // namespace

std::string describe_reason(std::string_view token, config::language lang) {
  const auto w = reason_words(token);
  if (!w) return std::string(token);
  std::string text(lang == config::language::ja ? w->ja : w->en);
  if (!w->rest.empty()) text += " (" + display_safe(w->rest, 80) + ")";
  return text;
}

std::string render_sanitized_notice(const config::policy& pol, const report& rep, const notice_summary& s) {
  const bool ja = pol.notice_language == config::language::ja;
  std::string contact = pol.contact.empty() ? (ja ? "システム管理者" : "your mail administrator") : display_safe(pol.contact, 200);
  std::string id = rep.quarantine_id.value_or("");

  std::string what;  // bullet lines describing what was done
  auto bullet = [&](std::string_view line) {
    what += ja ? "・" : "* ";
    what += line;
    what += '\n';
  };
  if (s.html_converted) bullet(ja ? "HTML 形式の本文をテキストに変換しました。" : "The HTML body was converted to plain text.");
  if (s.links_defanged > 0)
    bullet(ja ? "リンクは誤ってクリックされないよう無害化しています（例: hxxps://example[.]com）。"
              : "Links are defanged so they cannot be clicked by mistake (e.g. hxxps://example[.]com).");
  if (s.links_removed > 0) bullet(ja ? "一部のリンク先を削除しました。" : "Some link targets were removed.");
  if (s.phishing_cues > 0)
    bullet(ja ? "表示と実際のリンク先が異なるリンクがあります。なりすましにご注意ください。"
              : "Some links point to a different site than their text shows: beware of phishing.");
  if (s.signature_removed)
    bullet(ja ? "電子署名は無害化により検証できなくなるため削除しました。"
              : "The digital signature was removed (it cannot be verified after sanitizing).");
  if (s.charset_guessed)
    bullet(ja ? "文字コードの指定が誤っていたため推定して変換しました。文字化けがあればご連絡ください。"
              : "The character set was mislabelled and has been guessed; report any garbled text.");

  std::string list;
  int n = 0;
  for (auto& p : rep.parts) {
    if (p.action != part_action::quarantined && p.action != part_action::discarded) continue;
    if (p.reason == "alternative-not-shown" || p.reason == "empty") continue;
    ++n;
    std::string name = p.filename.empty() ? (ja ? "(名前なし)" : "(no name)") : display_safe(p.filename, 120);
    list += "  " + std::to_string(n) + ". " + name + "\n";
    list += ja ? "     種別: " : "     Type: ";
    list += display_safe(p.declared_type, 80);
    list += ja ? "（検出: " : " (detected: ";
    list += display_safe(p.detected_type, 80);
    list += ja ? "）" : ")";
    list += ja ? "  サイズ: " : "  Size: ";
    list += group_thousands(p.size);
    list += ja ? " バイト\n" : " bytes\n";
    list += "     SHA-256: " + p.sha256 + "\n";
    list += ja ? "     処理: " : "     Action: ";
    list += action_text(p.action, pol.notice_language);
    list += " (" + describe_reason(p.reason, pol.notice_language);
    if (!p.flags.empty()) list += (ja ? "、" : ", ") + flags_text(p.flags, pol.notice_language);
    list += ")\n";
  }
  if (n > 0)
    bullet(ja ? "次の添付ファイル等を削除しました（" + std::to_string(n) + " 件）:"
              : "These attachments or parts were removed (" + std::to_string(n) + "):");

  std::string tmpl = ja ? pol.templates.sanitized_ja : pol.templates.sanitized_en;
  if (tmpl.empty()) {
    if (ja) {
      tmpl = std::string(rule_line) +
             "\n【無害化通知】このメールはインターネットから受信したため、安全のためテキスト形式に変換しました。\n"
             "{actions}{removed_list}";
      if (!id.empty())
        tmpl += "隔離ID: {quarantine_id}\n"
                "削除された添付ファイルや元のメールが業務上必要な場合は、隔離IDを添えて {contact} へ取り出しを依頼してください。\n";
    } else {
      tmpl = std::string(rule_line) +
             "\n[Sanitized] This message came from the Internet and was converted to plain text for safety.\n"
             "{actions}{removed_list}";
      if (!id.empty())
        tmpl += "Quarantine ID: {quarantine_id}\n"
                "If you need a removed attachment or the original message, ask {contact} and quote the quarantine ID.\n";
    }
    tmpl += std::string(rule_line) + "\n\n";
  }
  return fill_template(tmpl, {{"actions", what},
                              {"removed_list", list},
                              {"quarantine_id", id},
                              {"contact", contact},
                              {"verdict_text", to_string(rep.result)}});
}

std::string render_hold_notice(const config::policy& pol, const hold_facts& f) {
  const bool ja = pol.notice_language == config::language::ja;
  std::string contact = pol.contact.empty() ? (ja ? "システム管理者" : "your mail administrator") : display_safe(pol.contact, 200);
  std::string reasons;
  for (auto& r : f.reasons) {
    if (!reasons.empty()) reasons += ja ? "、" : "; ";
    reasons += describe_reason(r, pol.notice_language);
  }
  std::string tmpl = ja ? pol.templates.held_ja : pol.templates.held_en;
  if (tmpl.empty()) {
    tmpl = ja ? std::string(rule_line) +
                    "\n【保留通知】インターネットから届いた次のメールは、安全に無害化できなかったため"
                    "配送せずに保留（隔離）しました。\n\n"
                    "  差出人: {from}\n  件名:   {subject}\n  日付:   {date}\n  理由:   {reasons}\n"
                    "  隔離ID: {quarantine_id}\n\n"
                    "業務上必要なメールの場合は、隔離IDを添えて {contact} へ確認を依頼してください。\n" +
                    std::string(rule_line) + "\n"
              : std::string(rule_line) +
                    "\n[Held] The message below came from the Internet and could not be made harmless, "
                    "so it was held in quarantine instead of being delivered.\n\n"
                    "  From:          {from}\n  Subject:       {subject}\n  Date:          {date}\n"
                    "  Reason:        {reasons}\n  Quarantine ID: {quarantine_id}\n\n"
                    "If you need this message, ask {contact} and quote the quarantine ID.\n" +
                    std::string(rule_line) + "\n";
  }
  return fill_template(tmpl, {{"from", display_safe(f.from, 200)},
                              {"subject", display_safe(f.subject, 200)},
                              {"date", display_safe(f.date, 80)},
                              {"reasons", reasons},
                              {"quarantine_id", f.quarantine_id},
                              {"contact", contact},
                              {"verdict_text", "held"}});
}

}  // namespace mukai::sanitize
