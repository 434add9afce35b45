#include <doctest/doctest.h>

#include "engine/stop_matcher.h"

using sbits::StopMatcher;

TEST_CASE("stop strings split across pushes are never emitted") {
  StopMatcher m({"<|im_end|>", "\nUser:"});
  std::string out;
  for (const char* piece : {"Hello", " there", "<|im", "_e", "nd|>", "ignored"}) out += m.push(piece);
  CHECK(out == "Hello there");
  CHECK(m.stopped());
  CHECK(m.matched() == "<|im_end|>");
  CHECK(m.flush().empty());
}

TEST_CASE("text that only looks like the start of a stop string is released") {
  StopMatcher m({"<|im_end|>"});
  std::string out = m.push("a <|im");
  CHECK(out == "a ");
  out += m.push("possible");
  CHECK(out == "a <|impossible");
  CHECK_FALSE(m.stopped());
  CHECK(m.flush().empty());
}

TEST_CASE("held-back text comes out at the end when no stop string follows") {
  StopMatcher m({"STOP"});
  CHECK(m.push("go ST") == "go ");
  CHECK(m.flush() == "ST");
}

TEST_CASE("the earliest of several stop strings wins, and empty ones are ignored") {
  StopMatcher m({"", "cd", "bcd"});
  CHECK(m.push("abcde") == "a");
  CHECK(m.matched() == "bcd");
}

TEST_CASE("without stop strings everything passes through") {
  StopMatcher m({});
  CHECK(m.push("abc") == "abc");
  CHECK(m.flush().empty());
}
