// Starting and stopping sbits-server from a test, on 127.0.0.1 with a port the server picks
// (--port 0, read back from its "listening on" line), plus small HTTP helpers.
//
// Everything is bounded: start-up, readiness and shutdown wait at most a few tens of seconds
// and fail the test (not hang) when the server does not get there.
#pragma once

#include <httplib.h>
#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sbits::test {

class ServerProcess {
 public:
  // Starts tools_dir()/server/sbits-server MODEL --port 0 ARGS... and waits until /health
  // answers 200 (fails the test after `ready_timeout_s`).
  ServerProcess(const std::string& model, const std::vector<std::string>& args, double ready_timeout_s = 60);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  // A client for this server, with bounded timeouts.
  httplib::Client client() const;
  // SIGTERM, then the exit status (SIGKILL and a failed check after 30 s).
  int stop();
  // What the server wrote to stderr so far.
  std::string log() const;

 private:
  pid_t pid_ = -1;
  int port_ = -1;
  std::string log_path_;
};

// The path of a converted test model (SBITS_TEST_MODELS, set by ctest).
std::string server_test_model(const std::string& name);

// Reads one metric's value from /metrics text (-1 when absent).
double metric_value(const std::string& metrics_text, const std::string& name);
double fetch_metric(const ServerProcess& server, const std::string& name);

// The concatenated "content"/"text" of the data events of an SSE body, and whether it ended
// with data: [DONE]. Fails the test on an event that is not JSON.
struct StreamResult {
  std::string text;
  std::vector<nlohmann::json> events;
  bool done = false;
};
StreamResult parse_sse(const std::string& body);

}  // namespace sbits::test
