// Chat templates: the built-ins are written in the custom template format and parsed like any
// custom template, so there is one code path and CHAT_TEMPLATES.md can show them verbatim.
#include "engine/text/chat_template.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string_view>

namespace sbits {
namespace {

struct Builtin {
  const char* name;
  const char* text;
};

// Keep in sync with CHAT_TEMPLATES.md (a test checks that the document shows these exactly).
constexpr std::array<Builtin, 4> kBuiltins = {{
    {"llama2", R"(# Llama 2 chat, as meta-llama/Llama-2-*-chat-hf's chat template renders it:
# <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]
version = 1
name = llama2
bos = ""
system_prefix = "<s>[INST] <<SYS>>\n"
system_suffix = "\n<</SYS>>\n\n"
user_prefix = "<s>[INST] "
user_prefix_after_system = ""
user_suffix = " [/INST]"
assistant_prefix = " "
assistant_suffix = " </s>"
generation_prompt = ""
trim_content = true
stop = "</s>"
stop = "[INST]"
)"},
    {"chatml", R"(# ChatML: <|im_start|>{role}\n{content}<|im_end|>\n, generation prompt <|im_start|>assistant\n
version = 1
name = chatml
bos = "<s>"
system_prefix = "<|im_start|>system\n"
system_suffix = "<|im_end|>\n"
user_prefix = "<|im_start|>user\n"
user_suffix = "<|im_end|>\n"
assistant_prefix = "<|im_start|>assistant\n"
assistant_suffix = "<|im_end|>\n"
generation_prompt = "<|im_start|>assistant\n"
stop = "<|im_end|>"
stop = "<|im_start|>"
)"},
    {"zephyr", R"(# Zephyr (HuggingFaceH4/zephyr-7b-beta): <|{role}|>\n{content}</s>\n,
# generation prompt <|assistant|>\n
version = 1
name = zephyr
bos = "<s>"
system_prefix = "<|system|>\n"
system_suffix = "</s>\n"
user_prefix = "<|user|>\n"
user_suffix = "</s>\n"
assistant_prefix = "<|assistant|>\n"
assistant_suffix = "</s>\n"
generation_prompt = "<|assistant|>\n"
stop = "</s>"
stop = "<|user|>"
)"},
    {"plain", R"(# A plain transcript for base models: System: / User: / Assistant: lines.
version = 1
name = plain
bos = "<s>"
system_prefix = "System: "
system_suffix = "\n"
user_prefix = "User: "
user_suffix = "\n"
assistant_prefix = "Assistant: "
assistant_suffix = "\n"
generation_prompt = "Assistant:"
trim_content = true
stop = "\nUser:"
stop = "\nSystem:"
)"},
}};

constexpr std::array<std::string_view, 13> kKeys = {
    "version",          "name",          "bos",          "system_prefix",    "system_suffix",
    "user_prefix",      "user_suffix",   "user_prefix_after_system",         "assistant_prefix",
    "assistant_suffix", "generation_prompt", "trim_content", "stop"};

constexpr std::string_view kSpaces = " \t";
constexpr std::string_view kWhitespace = " \t\n\r\f\v";

std::string_view trim(std::string_view s, std::string_view chars) {
  const size_t b = s.find_first_not_of(chars);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(chars) - b + 1);
}

std::string builtin_list() {
  std::string out;
  for (const auto& b : kBuiltins) out += (out.empty() ? "" : ", ") + std::string(b.name);
  return out;
}

}  // namespace

// Reads the custom format; errors name the line. See CHAT_TEMPLATES.md.
class ChatTemplateParser {
 public:
  static ChatTemplate parse(std::string_view text) {
    ChatTemplateParser p;
    size_t line_no = 0;
    for (size_t pos = 0; pos <= text.size();) {
      const size_t nl = std::min(text.find('\n', pos), text.size());
      p.line(++line_no, text.substr(pos, nl - pos));
      pos = nl + 1;
    }
    if (!p.seen_version_) p.fail(0, "missing 'version = 1' (the first key of every template)");
    if (p.t_.name_.empty()) p.t_.name_ = "custom";
    return std::move(p.t_);
  }

 private:
  [[noreturn]] void fail(size_t line_no, const std::string& msg) const {
    if (line_no == 0) throw std::invalid_argument("chat template: " + msg);
    throw std::invalid_argument(fmt::format("chat template line {}: {}", line_no, msg));
  }

  void line(size_t n, std::string_view raw) {
    if (raw.ends_with('\r')) raw.remove_suffix(1);  // CRLF files
    const std::string_view s = trim(raw, kSpaces);
    if (s.empty() || s.front() == '#') return;
    const size_t eq = s.find('=');
    if (eq == std::string_view::npos) fail(n, fmt::format("expected 'key = value', found '{}'", s));
    const std::string_view key = trim(s.substr(0, eq), kSpaces);
    const std::string value = parse_value(n, trim(s.substr(eq + 1), kSpaces));
    assign(n, key, value);
  }

  // A value is either "quoted" (keeps leading/trailing spaces) or bare (trimmed); both take
  // the escapes \n \t \r \\ \".
  std::string parse_value(size_t n, std::string_view v) const {
    const bool quoted = !v.empty() && v.front() == '"';
    if (quoted) {
      if (v.size() < 2 || v.back() != '"' || ends_with_escaped_quote(v))
        fail(n, fmt::format("unterminated quoted value {}", v));
      v = v.substr(1, v.size() - 2);
    }
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] == '"' && quoted) fail(n, "a '\"' inside a quoted value must be written \\\"");
      if (v[i] != '\\') {
        out += v[i];
        continue;
      }
      if (++i == v.size()) fail(n, "the value ends with a lone '\\'");
      switch (v[i]) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '"': out += '"'; break;
        default: fail(n, fmt::format("unknown escape '\\{}' (known: \\n \\t \\r \\\\ \\\")", v[i]));
      }
    }
    return out;
  }

  static bool ends_with_escaped_quote(std::string_view v) {
    // "abc\" : the closing quote is escaped when an odd number of backslashes precede it.
    size_t backslashes = 0;
    for (size_t i = v.size() - 1; i > 1 && v[i - 1] == '\\'; --i) ++backslashes;
    return backslashes % 2 == 1;
  }

  void assign(size_t n, std::string_view key, const std::string& value) {
    if (std::find(kKeys.begin(), kKeys.end(), key) == kKeys.end()) {
      std::string known;
      for (auto k : kKeys) known += (known.empty() ? "" : ", ") + std::string(k);
      fail(n, fmt::format("unknown key '{}' (known keys: {})", key, known));
    }
    if (key != "version" && !seen_version_) fail(n, "the first key must be 'version = 1'");
    if (key == "stop") {
      if (value.empty()) fail(n, "an empty stop string would stop every reply at once");
      t_.stop_.push_back(value);
      return;
    }
    if (std::find(seen_.begin(), seen_.end(), key) != seen_.end()) fail(n, fmt::format("duplicate key '{}'", key));
    seen_.emplace_back(key);
    if (key == "version") {
      if (value != "1") fail(n, fmt::format("unsupported version '{}' (this build reads version 1)", value));
      seen_version_ = true;
      return;
    }
    if (key == "trim_content") {
      if (value != "true" && value != "false")
        fail(n, fmt::format("trim_content must be true or false, not '{}'", value));
      t_.trim_content_ = value == "true";
    } else if (key == "name") {
      if (value.empty()) fail(n, "name must not be empty");
      t_.name_ = value;
    } else if (key == "user_prefix_after_system") {
      t_.user_prefix_after_system_ = value;
      t_.has_user_prefix_after_system_ = true;
    } else if (key == "generation_prompt") {
      t_.generation_prompt_ = value;
      has_generation_prompt_ = true;
    } else {
      *field(key) = value;
    }
    if (!has_generation_prompt_ && key == "assistant_prefix") t_.generation_prompt_ = value;  // the default
  }

  std::string* field(std::string_view key) {
    if (key == "bos") return &t_.bos_;
    if (key == "system_prefix") return &t_.system_prefix_;
    if (key == "system_suffix") return &t_.system_suffix_;
    if (key == "user_prefix") return &t_.user_prefix_;
    if (key == "user_suffix") return &t_.user_suffix_;
    if (key == "assistant_prefix") return &t_.assistant_prefix_;
    return &t_.assistant_suffix_;  // the last string key; assign() checked the key is known
  }

  ChatTemplate t_;
  std::vector<std::string> seen_;
  bool seen_version_ = false;
  bool has_generation_prompt_ = false;
};

ChatTemplate ChatTemplate::from_spec(const std::string& spec) {
  for (const auto& b : kBuiltins)
    if (spec == b.name) return ChatTemplateParser::parse(b.text);
  if (spec.find('\n') != std::string::npos || spec.find('=') != std::string::npos) {
    return ChatTemplateParser::parse(spec);
  }
  throw std::invalid_argument(fmt::format(
      "unknown chat template '{}': not a built-in ({}) and not template text (key = value lines starting with "
      "'version = 1'; see engine/text/CHAT_TEMPLATES.md)",
      spec, builtin_list()));
}

std::vector<std::string> ChatTemplate::builtin_names() {
  std::vector<std::string> out;
  for (const auto& b : kBuiltins) out.emplace_back(b.name);
  return out;
}

std::string ChatTemplate::render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  if (messages.empty()) throw std::invalid_argument(fmt::format("chat template '{}': no messages to render", name_));
  std::string out = bos_;
  std::string_view prev_role;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const std::string_view content = trim_content_ ? trim(m.content, kWhitespace) : std::string_view(m.content);
    if (m.role == "system") {
      out.append(system_prefix_).append(content).append(system_suffix_);
    } else if (m.role == "user") {
      const bool after_system = prev_role == "system" && has_user_prefix_after_system_;
      out.append(after_system ? user_prefix_after_system_ : user_prefix_).append(content).append(user_suffix_);
    } else if (m.role == "assistant") {
      out.append(assistant_prefix_).append(content).append(assistant_suffix_);
    } else {
      throw std::invalid_argument(fmt::format("chat template '{}': message {} has unknown role '{}' "
                                              "(expected system, user or assistant)", name_, i, m.role));
    }
    prev_role = m.role;
  }
  if (add_generation_prompt) out += generation_prompt_;
  return out;
}

std::string ChatTemplate::to_text() const {
  const auto q = [](std::string_view v) {
    std::string out = "\"";
    for (char c : v) {
      switch (c) {
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        case '\r': out += "\\r"; break;
        case '\\': out += "\\\\"; break;
        case '"': out += "\\\""; break;
        default: out += c;
      }
    }
    return out + "\"";
  };
  std::string out = "version = 1\nname = " + q(name_) + "\nbos = " + q(bos_) + "\n";
  out += "system_prefix = " + q(system_prefix_) + "\nsystem_suffix = " + q(system_suffix_) + "\n";
  out += "user_prefix = " + q(user_prefix_) + "\nuser_suffix = " + q(user_suffix_) + "\n";
  if (has_user_prefix_after_system_) out += "user_prefix_after_system = " + q(user_prefix_after_system_) + "\n";
  out += "assistant_prefix = " + q(assistant_prefix_) + "\nassistant_suffix = " + q(assistant_suffix_) + "\n";
  out += "generation_prompt = " + q(generation_prompt_) + "\n";
  out += std::string("trim_content = ") + (trim_content_ ? "true" : "false") + "\n";
  for (const auto& s : stop_) out += "stop = " + q(s) + "\n";
  return out;
}

}  // namespace sbits
