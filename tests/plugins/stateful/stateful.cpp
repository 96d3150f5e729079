// stateful: stateful-python's algorithm through the C++ SDK (tests/trainer/plugin_state_test.cpp).
#include <csignal>
#include <cstdint>

#include <bulkhead/plugin.hpp>

namespace {

std::uint32_t next_random(std::uint32_t value) { return value * 1664525u + 1013904223u; }

struct Stateful : bulkhead::Plugin {
  std::uint32_t random = 0;
  int epochs = 0;
  int step_starts = 0;  // of this process: not state

  void configure() override { random = context().options().value("seed", 1u); }

  void on_step_start(const bulkhead::Kwargs&) override {
    const int every = context().options().value("crash_every", 0);
    if (every && ++step_starts % every == 0) std::raise(SIGSEGV);
  }

  void on_epoch_end(const bulkhead::Kwargs&) override {
    ++epochs;
    random = next_random(random);
    const int grad_accum = 1 + (epochs + (random >> 16)) % 3;
    context().set_arg("grad_accum", grad_accum);
    context().log("info", "epoch end " + std::to_string(epochs) + ": random " + std::to_string(random) +
                              ", grad_accum " + std::to_string(grad_accum));
  }

  bulkhead::Json get_state() override { return {{"owner", "stateful"}, {"epochs", epochs}, {"random", random}}; }

  void set_state(const bulkhead::Json& state) override {
    if (state.at("owner") != "stateful") throw bulkhead::HookError("given the state of " + state.at("owner").dump());
    epochs = state.at("epochs").get<int>();
    random = state.at("random").get<std::uint32_t>();
    context().log("info", "set_state: " + std::to_string(epochs) + " epochs seen");
  }
};

}  // namespace

BULKHEAD_PLUGIN(Stateful, "stateful", "1.0.0", "Keeps state through the C++ SDK (plugin-state tests)")
