// Small helpers shared by the engine's command-line tools: typed option parsing with messages
// that name the option, what was expected and what was found.
#pragma once

#include <charconv>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sbits::cli {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Walks argv; value() consumes the argument after an option.
class Args {
 public:
  Args(int argc, char** argv) : argc_(argc), argv_(argv) {}
  bool done() const { return i_ >= argc_; }
  std::string_view next() { return argv_[i_++]; }
  std::string value(std::string_view option) {
    if (i_ >= argc_) throw UsageError("option " + std::string(option) + " needs a value");
    return argv_[i_++];
  }

 private:
  int argc_;
  char** argv_;
  int i_ = 1;
};

template <typename T>
T parse_number(std::string_view option, const std::string& text) {
  T v{};
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || p != end || text.empty())
    throw UsageError("option " + std::string(option) + " expects a number, got '" + text + "'");
  return v;
}

template <typename T>
T parse_in_range(std::string_view option, const std::string& text, T lo, T hi) {
  T v = parse_number<T>(option, text);
  if (v < lo || v > hi)
    throw UsageError("option " + std::string(option) + " expects a value in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "], got " + text);
  return v;
}

}  // namespace sbits::cli
