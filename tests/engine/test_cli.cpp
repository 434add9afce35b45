// sbits-run as a user runs it: golden text, seeds, statistics, and bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "tests/engine/engine_test_models.h"
#include "tests/test_data.h"

namespace {

using sbits::test::engine_model;
using sbits::test::run_command;

std::string sbits_run() { return sbits::test::tools_dir() + "/engine/sbits-run"; }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

TEST_CASE("stories260K greedy: sbits-run prints llama2.c's golden text exactly") {
  std::string out, err;
  const std::string cmd = sbits_run() + " " + quote(engine_model("stories260K.sbits")) + " -p '' -n 200 --temp 0";
  REQUIRE_MESSAGE(run_command(cmd, &out, &err) == 0, err);
  CHECK(out == read_file(sbits::test::data_path("golden/stories260K_greedy200_expected.txt")));
  CHECK(err.find("tok/s") != std::string::npos);  // statistics go to stderr, not stdout
}

TEST_CASE("sbits-run: same seed gives the same text, another seed another text") {
  const std::string base = sbits_run() + " " + quote(engine_model("stories260K.sbits")) +
                           " -p 'Once upon a time' -n 60 --temp 1 --top-k 0 --top-p 1 --min-p 0 --no-stats --seed ";
  std::string a, b, c, err;
  REQUIRE(run_command(base + "7", &a, &err) == 0);
  REQUIRE(run_command(base + "7", &b, &err) == 0);
  REQUIRE(run_command(base + "8", &c, &err) == 0);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a.size() > 20);
}

TEST_CASE("sbits-run: generation stops at the context length instead of running past it") {
  std::string out, err;
  const std::string cmd = sbits_run() + " " + quote(engine_model("stories260K.sbits")) + " -p '' -n 100 --ctx 16 --temp 0";
  REQUIRE_MESSAGE(run_command(cmd, &out, &err) == 0, err);
  CHECK(err.find("stop: context_full") != std::string::npos);
}

TEST_CASE("sbits-run --chat reads turns from stdin and answers each") {
  std::string out, err;
  const std::string cmd = "printf 'Hello\\nTell me a story\\n' | " + sbits_run() + " " +
                          quote(engine_model("stories260K.sbits")) + " --chat --chat-template plain -n 20 --temp 0";
  REQUIRE_MESSAGE(run_command(cmd, &out, &err) == 0, err);
  CHECK(std::count(err.begin(), err.end(), '>') >= 2);
  CHECK(std::count(out.begin(), out.end(), '\n') >= 2);  // one reply per turn
}

TEST_CASE("sbits-run: bad arguments print usage and exit non-zero without a signal") {
  std::string out, err;
  CHECK(run_command(sbits_run() + " --help", &out, &err) == 0);
  CHECK(out.find("usage: sbits-run") != std::string::npos);

  CHECK(run_command(sbits_run(), &out, &err) == 2);
  CHECK(err.find("no model given") != std::string::npos);

  CHECK(run_command(sbits_run() + " m.sbits --temp hot", &out, &err) == 2);
  CHECK(err.find("--temp expects a number, got 'hot'") != std::string::npos);

  CHECK(run_command(sbits_run() + " m.sbits --bogus", &out, &err) == 2);
  CHECK(err.find("unknown option '--bogus'") != std::string::npos);

  CHECK(run_command(sbits_run() + " /nonexistent/model.sbits -p hi", &out, &err) == 1);
  CHECK(err.find("sbits-run: error: ") == 0);
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);

  CHECK(run_command(sbits_run() + " " + quote(engine_model("stories260K.sbits")) + " --backend tpu -p hi", &out, &err) == 1);
  CHECK(err.find("unknown backend 'tpu'") != std::string::npos);
}

TEST_CASE("sbits-run: a file that is not a .sbits model is refused with a message") {
  const std::string dir = sbits::test::temp_dir();
  std::ofstream(dir + "/junk.sbits") << "this is not a model";
  std::string out, err;
  const int rc = run_command(sbits_run() + " " + dir + "/junk.sbits -p hi", &out, &err);
  CHECK(rc == 1);
  CHECK(err.find("sbits-run: error:") == 0);
  CHECK(out.empty());
}
