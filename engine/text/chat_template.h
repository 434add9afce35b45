// Chat templates: turning a list of messages into prompt text. See CHAT_TEMPLATES.md for the
// built-ins written out and the custom template format.
//
// A template is a fixed set of strings placed around each message (prefix + content + suffix
// per role), which covers the Llama 2, ChatML and Zephyr formats exactly. It is not Jinja: we do
// not run the Hugging Face template code.
// Threading: immutable after construction; render() may be called from several threads.
#pragma once

#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace sbits {

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
};

class ChatTemplate {
 public:
  // spec: a built-in name ("llama2" ([INST] <<SYS>>), "chatml", "zephyr", "plain") or the text
  // of a custom template (key = value lines, see CHAT_TEMPLATES.md; must contain "version = 1").
  // Throws std::invalid_argument naming the spec and listing the built-ins when it is neither,
  // and naming the line for errors in a custom template.
  static ChatTemplate from_spec(const std::string& spec);
  static std::vector<std::string> builtin_names();

  const std::string& name() const { return name_; }

  // The prompt text for these messages, control tokens written literally ("<s>", "</s>",
  // "<|im_start|>") for Tokenizer::encode_with_specials. Includes the BOS text where the
  // template wants it (so callers encode with add_bos=false). With add_generation_prompt, ends
  // where the assistant's reply begins. Throws std::invalid_argument on an empty list or an
  // unknown role (the message names the role and the index).
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

  // Strings that end an assistant turn beyond EOS (e.g. "<|im_end|>"), for stop detection.
  const std::vector<std::string>& stop_strings() const { return stop_; }

  // The template written in the custom format; from_spec(to_text()) gives the same template.
  std::string to_text() const;

 private:
  ChatTemplate() = default;

  std::string name_;
  std::string bos_;
  std::string system_prefix_, system_suffix_;
  std::string user_prefix_, user_suffix_;
  std::string user_prefix_after_system_;
  bool has_user_prefix_after_system_ = false;
  std::string assistant_prefix_, assistant_suffix_;
  std::string generation_prompt_;
  bool trim_content_ = false;
  std::vector<std::string> stop_;

  friend class ChatTemplateParser;
};

}  // namespace sbits
