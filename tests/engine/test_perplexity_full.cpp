// The acceptance figure: tech-llama-58m bf16 on the whole held-out split, docs protocol, ctx 512.
// About 149k tokens through a 58M-parameter model: labelled 'slow' (Release build only).
#include <doctest/doctest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "tests/engine/engine_test_models.h"
#include "tests/test_data.h"

TEST_CASE("sbits-perplexity --protocol docs --ctx 512 on techdocs_val.txt gives 17.24 +/- 0.05") {
  std::string out, err;
  const std::string cmd = sbits::test::tools_dir() + "/engine/sbits-perplexity '" +
                          sbits::test::engine_model("tech-llama-58m-bf16.sbits") + "' -f '" +
                          sbits::test::data_path("text/techdocs_val.txt") + "' --ctx 512 --protocol docs --json";
  REQUIRE_MESSAGE(sbits::test::run_command(cmd, &out, &err) == 0, err);
  auto j = nlohmann::json::parse(out);
  MESSAGE("perplexity " << j["ppl"] << " +/- " << j["ppl_error"] << " over " << j["tokens"] << " tokens in "
                        << j["seconds"] << " s");
  CHECK(j["tokens"].get<size_t>() == 148999);
  CHECK(std::abs(j["ppl"].get<double>() - 17.2437) <= 0.05);
}
