#include "tests/server/server_process.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/test_data.h"

extern char** environ;

namespace sbits::test {
namespace {

using Clock = std::chrono::steady_clock;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The port from "sbits-server: listening on http://127.0.0.1:PORT", or -1.
int port_from_log(const std::string& log) {
  const std::string marker = "listening on http://127.0.0.1:";
  const size_t p = log.find(marker);
  if (p == std::string::npos) return -1;
  return std::atoi(log.c_str() + p + marker.size());
}

}  // namespace

std::string server_test_model(const std::string& name) {
  const char* dir = std::getenv("SBITS_TEST_MODELS");
  if (!dir || !*dir) FAIL("SBITS_TEST_MODELS is not set: run this test through ctest");
  std::string path = std::string(dir) + "/" + name;
  if (!std::filesystem::exists(path)) FAIL("converted test model missing: " << path << " (fixture engine_convert_models)");
  return path;
}

ServerProcess::ServerProcess(const std::string& model, const std::vector<std::string>& args, double ready_timeout_s) {
  const std::string exe = tools_dir() + "/server/sbits-server";
  REQUIRE_MESSAGE(std::filesystem::exists(exe), "sbits-server not built: " << exe);
  log_path_ = temp_dir() + "/server.log";
  std::vector<std::string> argv_s = {exe, model, "--host", "127.0.0.1", "--port", "0"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 2, 1);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  const int rc = posix_spawn(&pid_, exe.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  REQUIRE_MESSAGE(rc == 0, "posix_spawn failed: " << rc);

  const auto deadline = Clock::now() + std::chrono::duration<double>(ready_timeout_s);
  while (true) {
    if (port_ < 0) port_ = port_from_log(slurp(log_path_));
    if (port_ >= 0) {
      auto res = client().Get("/health");
      if (res && res->status == 200) break;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      FAIL("sbits-server exited during start-up (status " << status << "):\n" << log());
    }
    if (Clock::now() > deadline) {
      kill(pid_, SIGKILL);  // the destructor does not run for a constructor that fails
      waitpid(pid_, &status, 0);
      pid_ = -1;
      FAIL("sbits-server not ready after " << ready_timeout_s << " s:\n" << log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) stop();
}

httplib::Client ServerProcess::client() const {
  httplib::Client c("127.0.0.1", port_ < 0 ? 1 : port_);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(120, 0);
  c.set_write_timeout(30, 0);
  return c;
}

int ServerProcess::stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) != pid_) {
    if (Clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      pid_ = -1;
      FAIL_CHECK("sbits-server did not stop within 30 s of SIGTERM:\n" << log());
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string ServerProcess::log() const { return slurp(log_path_); }

double metric_value(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::atof(line.c_str() + name.size() + 1);
  }
  return -1;
}

double fetch_metric(const ServerProcess& server, const std::string& name) {
  auto res = server.client().Get("/metrics");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  return metric_value(res->body, name);
}

StreamResult parse_sse(const std::string& body) {
  StreamResult r;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    const std::string data = line.substr(6);
    if (data == "[DONE]") {
      r.done = true;
      continue;
    }
    CHECK_FALSE(r.done);  // nothing after [DONE]
    nlohmann::json j = nlohmann::json::parse(data, nullptr, false);
    REQUIRE_MESSAGE(!j.is_discarded(), "SSE event is not JSON: " << data);
    if (j.contains("choices") && !j["choices"].empty()) {
      const auto& c = j["choices"][0];
      if (c.contains("delta") && c["delta"].contains("content")) r.text += c["delta"]["content"].get<std::string>();
      if (c.contains("text")) r.text += c["text"].get<std::string>();
    }
    r.events.push_back(std::move(j));
  }
  return r;
}

}  // namespace sbits::test
