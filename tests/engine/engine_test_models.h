// Paths of the models that the engine_convert_models fixture converted for the engine tests.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace sbits::test {

inline std::string engine_model(const std::string& name) {
  const char* dir = std::getenv("SBITS_TEST_MODELS");
  if (!dir || !*dir) FAIL("SBITS_TEST_MODELS is not set: run this test through ctest");
  std::string path = std::string(dir) + "/" + name;
  if (!std::filesystem::exists(path)) FAIL("converted test model missing: " << path << " (fixture engine_convert_models)");
  return path;
}

}  // namespace sbits::test
