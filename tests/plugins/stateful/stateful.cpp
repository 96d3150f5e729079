// stateful: stateful-python's algorithm through the C++ SDK (tests/trainer/plugin_state_test.cpp),
// and its exact values: after each set_state it logs "state exact" or "state changed: ...".
#include <csignal>
#include <cstdint>
#include <cstring>
#include <limits>

#include <bulkhead/plugin.hpp>

namespace {

double from_bits(std::uint64_t bits) {
  double value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Values a careless codec changes: integral floats, -0.0, a subnormal, a NaN's payload, the widest integers.
const bulkhead::Json& exact_values() {
  static const bulkhead::Json values = {{"two", 2.0},
                                        {"negative_zero", -0.0},
                                        {"subnormal", std::numeric_limits<double>::denorm_min()},
                                        {"nan", from_bits(0x7FF8000000000BADull)},
                                        {"integer", 2},
                                        {"largest", std::numeric_limits<std::uint64_t>::max()},
                                        {"smallest", std::numeric_limits<std::int64_t>::min()}};
  return values;
}

// The same kind (an integer is an integer, signed or not; a float a float), and for a float the same bits.
bool same(const bulkhead::Json& a, const bulkhead::Json& b) {
  if (a.is_number_integer() && b.is_number_integer()) return a == b;
  if (a.type() != b.type()) return false;
  if (!a.is_number_float()) return a == b;
  const double x = a.get<double>(), y = b.get<double>();
  return std::memcmp(&x, &y, sizeof x) == 0;
}

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

  bulkhead::Json get_state() override {
    return {{"owner", "stateful"}, {"epochs", epochs}, {"random", random}, {"exact", exact_values()}};
  }

  void set_state(const bulkhead::Json& state) override {
    if (state.at("owner") != "stateful") throw bulkhead::HookError("given the state of " + state.at("owner").dump());
    epochs = state.at("epochs").get<int>();
    random = state.at("random").get<std::uint32_t>();
    context().log("info", "set_state: " + std::to_string(epochs) + " epochs seen");
    std::string changed;
    for (const auto& [name, value] : exact_values().items())
      if (!state.contains("exact") || !state["exact"].contains(name) || !same(state["exact"][name], value))
        changed += (changed.empty() ? "" : ", ") + name;
    context().log("info", changed.empty() ? "state exact" : "state changed: " + changed);
  }
};

}  // namespace

BULKHEAD_PLUGIN(Stateful, "stateful", "1.0.0", "Keeps state through the C++ SDK (plugin-state tests)")
