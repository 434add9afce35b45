// Locating the shared test data and the built tools from tests.
#pragma once

#include <string>

namespace sbits::test {

// $SBITS_DATA if set, else ../shared/data beside the repository.
std::string data_dir();
// data_dir() + "/" + rel; fails the test (not skips) when the file is missing: CI has the data.
std::string data_path(const std::string& rel);
// The build directory's root, where tools are built (engine/sbits-run, formats/sbits-convert...).
std::string tools_dir();
// A fresh, empty temporary directory, removed at process exit.
std::string temp_dir();

// The whole file as bytes ("" when it cannot be read).
std::string read_text_file(const std::string& path);

// Runs a shell command, returns its exit status; stdout/stderr are captured into the strings.
int run_command(const std::string& cmd, std::string* out = nullptr, std::string* err = nullptr);

}  // namespace sbits::test
