// Notice texts. The wording is for municipal staff who are not mail experts: say what was
// removed, that it is kept safe, and how to ask for it (the quarantine ID and the contact).
#include "sanitizers/notice.hpp"

#include <utility>

#include "sanitizers/display_safe.hpp"

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

struct reason_text {
  std::string_view token, ja, en;
};

// Longest-prefix table: "rule:foo" matches "rule:".
constexpr reason_text reason_texts[] = {
    {"limit:message-size", "メッセージのサイズが上限を超えています", "the message is larger than the limit"},
    {"limit:header-size", "ヘッダーが大きすぎます", "the header block is larger than the limit"},
    {"limit:mime-depth", "MIME の入れ子が深すぎます", "MIME nesting is deeper than the limit"},
    {"limit:parts", "パートの数が上限を超えています", "the message has more parts than the limit"},
    {"limit:time", "処理時間が上限を超えました", "processing took longer than the limit"},
    {"limit:html-size", "HTML 本文が大きすぎます", "the HTML body is larger than the limit"},
    {"limit:html-complexity", "HTML の構造が複雑すぎます", "the HTML is too complex to convert safely"},
    {"limit:output-size", "変換後の本文が大きすぎます", "the converted text is larger than the limit"},
    {"unparseable", "メッセージを解析できません", "the message cannot be parsed"},
    {"encrypted", "暗号化されたメッセージは無害化できません", "encrypted messages cannot be made harmless"},
    {"ambiguous:", "MIME 構造があいまいです（メールソフトにより解釈が異なる恐れ）",
     "the MIME structure is ambiguous (mail programs may read it differently)"},
    {"internal:", "内部エラー", "internal error"},
    {"worker:", "無害化処理が異常終了しました", "the sanitizer process failed"},
    {"attachment", "添付ファイル", "attachment"},
    {"inline-image", "本文中の画像", "inline image"},
    {"signature", "電子署名", "digital signature"},
    {"active-text-type", "実行可能な内容を含み得るテキスト形式", "text type that can carry active content"},
    {"html-attachment", "HTML ファイル", "HTML file"},
    {"encoded-block", "本文中の符号化データ", "encoded data inside the text"},
    {"binary-as-text", "テキストと偽った非テキストデータ", "binary data declared as text"},
    {"message-partial", "分割メッセージ", "partial message"},
    {"external-body", "外部参照パート", "external body reference"},
    {"rule:", "ポリシー規則", "policy rule"},
    {"alternative-not-shown", "表示しなかった代替パート", "alternative not shown"},
    {"empty", "空のパート", "empty part"},
};

std::string flags_text(const std::vector<std::string>& flags, config::language lang) {
  static constexpr std::pair<std::string_view, std::string_view> ja[] = {
      {"executable", "実行ファイル"},         {"macro-office", "マクロ付き Office 文書"},
      {"encrypted-archive", "暗号化圧縮ファイル"}, {"encrypted-document", "暗号化文書"},
      {"double-extension", "二重拡張子"},       {"type-mismatch", "種別と拡張子の不一致"},
      {"archive-with-executable", "実行ファイルを含む圧縮ファイル"},
  };
  std::string out;
  for (auto& f : flags) {
    if (!out.empty()) out += lang == config::language::ja ? "、" : ", ";
    std::string_view word = f;
    if (lang == config::language::ja)
      for (auto& [k, v] : ja)
        if (k == f) word = v;
    out += word;
  }
  return out;
}

std::string action_text(part_action a, config::language lang) {
  bool ja = lang == config::language::ja;
  switch (a) {
    case part_action::quarantined: return ja ? "隔離" : "quarantined";
    case part_action::discarded: return ja ? "破棄" : "discarded";
    case part_action::converted: return ja ? "テキストに変換" : "converted to text";
    case part_action::kept_as_text: return ja ? "本文として表示" : "shown as text";
  }
  return {};
}

constexpr std::string_view rule_line = "======================================================================";

}  // namespace

std::string describe_reason(std::string_view token, config::language lang) {
  const reason_text* best = nullptr;
  for (auto& r : reason_texts) {
    bool prefix = r.token.back() == ':' || r.token.back() == '-';
    if (token == r.token || (prefix && token.substr(0, r.token.size()) == r.token)) {
      if (!best || r.token.size() > best->token.size()) best = &r;
    }
  }
  std::string text = best ? std::string(lang == config::language::ja ? best->ja : best->en) : std::string(token);
  if (best && best->token.back() == ':' && token.size() > best->token.size())
    text += " (" + display_safe(token.substr(best->token.size()), 80) + ")";
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
