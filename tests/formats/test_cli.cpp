// sbits-convert and sbits-inspect as processes: usage, JSON output, one-line errors.
#include <doctest/doctest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/formats/test_util.h"
#include "tests/test_data.h"

using json = nlohmann::json;
namespace fs = std::filesystem;
using sbits::test::run_tool;

namespace {

void check_one_line_error(int rc, const std::string& err, const std::string& tool, const std::string& expect) {
  CHECK(rc != 0);
  CHECK(rc < 128);
  CHECK_MESSAGE(err.rfind(tool + ": error: ", 0) == 0, err);
  CHECK_MESSAGE(err.find(expect) != std::string::npos, err);
}

}  // namespace

TEST_CASE("cli: --help and bad arguments") {
  for (const char* tool : {"sbits-convert", "sbits-inspect"}) {
    std::string out, err;
    CHECK(run_tool(tool, "--help", &out, &err) == 0);
    CHECK(out.rfind("usage: ", 0) == 0);
    int rc = run_tool(tool, "--bogus", &out, &err);
    CHECK(rc == 2);
    CHECK(err.find("unknown option --bogus") != std::string::npos);
    CHECK(err.find("usage: ") != std::string::npos);
    rc = run_tool(tool, "", &out, &err);
    CHECK(rc == 2);
    CHECK(err.find("usage: ") != std::string::npos);
  }
  std::string err;
  CHECK(run_tool("sbits-convert", "x", nullptr, &err) == 2);
  CHECK(err.find("no output given") != std::string::npos);
  CHECK(run_tool("sbits-convert", "x -o", nullptr, &err) == 2);
  CHECK(err.find("option -o needs a value") != std::string::npos);
}

TEST_CASE("cli: convert stories260K, inspect --json") {
  const std::string dir = sbits::test::temp_dir();
  const std::string out = dir + "/s.sbits";
  std::string o, e;
  int rc = run_tool("sbits-convert", sbits::test::data_path("models/stories260K.bin") + " -o " + out + " --tokenizer " +
                                         sbits::test::data_path("models/tok512.bin") + " --dtype bf16 --name tiny-stories",
                    &o, &e);
  REQUIRE_MESSAGE(rc == 0, e);
  CHECK(o.find("wrote " + out) != std::string::npos);
  rc = run_tool("sbits-inspect", out + " --json --verify", &o, &e);
  REQUIRE_MESSAGE(rc == 0, e);
  json j = json::parse(o);
  CHECK(j["params"] == 260032);
  CHECK(j["file_bytes"] == fs::file_size(out));
  CHECK(j["bpw"].get<double>() == doctest::Approx(16.0));
  CHECK(j["tensors_verified"] == true);
  CHECK(j["metadata"]["general.name"] == "tiny-stories");
  CHECK(j["metadata"]["llama.rope.convention"] == "interleaved");
  CHECK(j["metadata"]["tokenizer.kind"] == "llama2c");
  CHECK(j["metadata"]["tokenizer.model"]["size"] == fs::file_size(sbits::test::data_path("models/tok512.bin")));
  REQUIRE(j["tensors"].size() == 47);
  const json& t0 = j["tensors"][0];
  CHECK(t0["name"] == "tok_embd");
  CHECK(t0["layout"] == "bf16");
  CHECK(t0["shape"] == json::array({512, 64}));
  CHECK(t0["bytes"] == 512 * 64 * 2);
  CHECK(t0["offset"].get<uint64_t>() % 256 == 0);
  uint64_t total = 0;
  for (const json& t : j["tensors"]) total += t["bytes"].get<uint64_t>();
  CHECK(total == j["tensor_bytes"]);

  rc = run_tool("sbits-inspect", out, &o, &e);  // text form
  CHECK(rc == 0);
  CHECK(o.find("tokenizer.model") != std::string::npos);
  CHECK(o.find("<6227 bytes>") != std::string::npos);  // bytes shown by size only
  CHECK(o.find("16.000 bits per weight") != std::string::npos);
}

TEST_CASE("cli: convert errors are one line and leave no output") {
  const std::string dir = sbits::test::temp_dir();
  std::string e;
  int rc = run_tool("sbits-convert", sbits::test::data_path("models/stories260K.bin") + " -o " + dir + "/x.sbits", nullptr, &e);
  check_one_line_error(rc, e, "sbits-convert", "carry no tokenizer");
  rc = run_tool("sbits-convert", sbits::test::data_path("models/stories260K.bin") + " -o " + dir + "/x.sbits --dtype q4", nullptr, &e);
  check_one_line_error(rc, e, "sbits-convert", "dtype \"q4\": expected one of bf16, f16, f32");
  rc = run_tool("sbits-convert", sbits::test::data_path("models") + " -o " + dir + "/x.sbits", nullptr, &e);
  check_one_line_error(rc, e, "sbits-convert", "no config.json");
  CHECK(fs::is_empty(dir));
}

TEST_CASE("cli: convert tech-llama-58m with a chat template file, inspect reports 16 bpw") {
  const std::string dir = sbits::test::temp_dir();
  {
    std::FILE* f = std::fopen((dir + "/tmpl.txt").c_str(), "w");
    std::fputs("<|user|>{{ content }}", f);
    std::fclose(f);
  }
  std::string o, e;
  int rc = run_tool("sbits-convert", sbits::test::data_path("models/tech-llama-58m") + " -o " + dir + "/t.sbits --chat-template " +
                                         dir + "/tmpl.txt",
                    &o, &e);
  REQUIRE_MESSAGE(rc == 0, e);
  rc = run_tool("sbits-inspect", dir + "/t.sbits --json", &o, &e);
  REQUIRE_MESSAGE(rc == 0, e);
  json j = json::parse(o);
  CHECK(j["params"] == 57942528);
  CHECK(j["bpw"].get<double>() == doctest::Approx(16.0));
  CHECK(j["metadata"]["chat.template"] == "<|user|>{{ content }}");
  CHECK(j["metadata"]["llama.rope.convention"] == "neox");
  CHECK(j["tensors"].size() == 75);
}
