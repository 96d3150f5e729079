// bench_support.hpp — what the benchmark programs share: a runner around one plugin.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include <benchmark/benchmark.h>
#include <zmq.hpp>

#include "common/paths.hpp"
#include "supervisor/plugin_runner.hpp"

namespace bulkhead::bench {

// A runner with one plugin (bundled, or a test plugin from tests/plugins), started and ready,
// in the full jail or the weak one.
inline std::unique_ptr<PluginRunner> runner_for(const std::string& entry, Json options = Json::object(),
                                                JailSettings::Mode jail = JailSettings::Mode::full, int pool = 1,
                                                bool image_region = true) {
  setenv("BULKHEAD_PLUGINS_PATH", (paths::home() / "tests" / "plugins").c_str(), 1);
  PluginSettings s;
  s.entry = entry;
  s.options = std::move(options);
  s.pool = pool;
  if (!image_region) s.limits.image_region_slots = 0;  // pixels in the message (attachment frames)
  RunInfo run;
  run.project_name = "bench";
  run.run_dir = std::filesystem::temp_directory_path() / ("bench-run-" + std::to_string(getpid()));
  run.jail.mode = jail;
  return std::make_unique<PluginRunner>(std::vector<PluginSettings>{s}, run);
}

// The floor's peer: a DEALER on `endpoint` that sends back every message it gets, until "quit".
inline int echo_until_quit(const std::string& endpoint) {
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.connect(endpoint);
  for (;;) {
    zmq::message_t message;
    if (!socket.recv(message)) continue;
    if (message.size() == 4 && std::memcmp(message.data(), "quit", 4) == 0) return 0;
    socket.send(message, zmq::send_flags::none);
  }
}

// Fails the benchmark when any call did not end well (a benchmark of faults measures nothing).
inline void check_no_faults(benchmark::State& state, const PluginRunner& runner) {
  for (const auto& host : runner.report()["plugins"])
    for (const auto& [hook, c] : host["hooks"].items())
      if (c["ok"].get<long>() != c["calls"].get<long>())
        state.SkipWithError(("faults in " + hook + ": " + c.dump()).c_str());
}

}  // namespace bulkhead::bench
