// sbits-bench as a user runs it (a benchmark: only that it runs, reports what it measured and
// refuses bad input is tested). Registered only when the benchmarks are built (SBITS_BUILD_BENCH).
#include <doctest/doctest.h>

#include <string>

#include "tests/engine/engine_test_models.h"
#include "tests/test_data.h"

namespace {

using sbits::test::engine_model;
using sbits::test::run_command;

std::string quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

TEST_CASE("sbits-bench writes its table and JSON: decode by top-k or all logits, at a depth") {
  const std::string bench = sbits::test::tools_dir() + "/engine/sbits-bench";
  const std::string json = sbits::test::temp_dir() + "/bench.json";
  for (const char* k : {"40", "0"}) {
    std::string out, err;
    const std::string cmd = bench + " " + quote(engine_model("stories260K.sbits")) +
                            " --backend cpu --threads 1 -p 1 -d 5 -n 4 -r 1 --top-k " + k + " --out " + quote(json);
    REQUIRE_MESSAGE(run_command(cmd, &out, &err) == 0, err);
    CHECK(out.find(std::string(k) == "0" ? "all logits" : "top-40") != std::string::npos);
    const std::string j = sbits::test::read_text_file(json);
    CHECK(j.find(std::string("\"decode_top_k\": ") + k) != std::string::npos);
    CHECK(j.find("\"decode_tok_s\"") != std::string::npos);
    CHECK(j.find("\"decode_depth\": 5") != std::string::npos);
  }
}

TEST_CASE("sbits-bench refuses a --top-k above the backends' 64, naming the option") {
  std::string out, err;
  CHECK(run_command(sbits::test::tools_dir() + "/engine/sbits-bench " + quote(engine_model("stories260K.sbits")) +
                        " --top-k 65",
                    &out, &err) == 2);
  CHECK(err.find("--top-k") != std::string::npos);
}
