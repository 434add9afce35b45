// Finds stop strings in streamed text without ever emitting any part of one, even when a stop
// string arrives split across several tokens: text that could be the start of a stop string is
// held back until it is known not to be.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sbits {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Adds generated text; returns the part that is now safe to emit. After a stop string is
  // found, stopped() is true and the returned text ends just before it.
  std::string push(std::string_view text);
  // At the end of generation: the text still held back (empty once stopped).
  std::string flush();
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  std::string matched_;
  bool stopped_ = false;
};

}  // namespace sbits
