// Helpers shared by the quantizer's process-level tests.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "tests/test_data.h"

namespace sbits::quantizer::test_util {

// A built tool by its path under the build directory ("quantizer/sbits-quantize").
inline std::string tool(const std::string& rel) { return test::tools_dir() + "/" + rel; }

// stories260K converted to .sbits once per test process.
inline const std::string& stories_sbits() {
  static const std::string path = [] {
    const std::string out = test::temp_dir() + "/stories260K.sbits";
    const std::string cmd = tool("formats/sbits-convert") + " " + test::data_path("models/stories260K.bin") +
                            " --tokenizer " + test::data_path("models/tok512.model") + " -o " + out;
    std::string err;
    REQUIRE_MESSAGE(test::run_command(cmd, nullptr, &err) == 0, err);
    return out;
  }();
  return path;
}

}  // namespace sbits::quantizer::test_util
