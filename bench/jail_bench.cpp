// jail_bench — what the jail costs: starting a plugin, restarting it, and a hook's round trip, in
// the full jail (bubblewrap, cgroup, seccomp, Landlock) against the weak one (seccomp and rlimits
// only), in the same run, for a C++ plugin (recorder) and a Python one (noop-python).
//
//   build/bin/jail_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//
// Rows are named BM_<what>/<runtime>/<jail>: runtime 0 = C++, 1 = Python; jail 0 = weak, 1 = full.
#include <spdlog/spdlog.h>

#include "bench_support.hpp"

namespace {

using bulkhead::Json;
using bulkhead::JailSettings;
using bulkhead::bench::check_no_faults;
using bulkhead::bench::runner_for;

const char* plugin(const benchmark::State& state) { return state.range(0) == 0 ? "recorder" : "noop-python"; }
JailSettings::Mode jail(const benchmark::State& state) { return state.range(1) == 1 ? JailSettings::Mode::full : JailSettings::Mode::weak; }

// From nothing to a plugin that has said hello and been welcomed.
void BM_Start(benchmark::State& state) {
  for (auto _ : state) {
    auto runner = runner_for(plugin(state), Json::object(), jail(state));
    state.PauseTiming();
    runner.reset();  // shutdown is not part of a start
    state.ResumeTiming();
  }
}

// `bulkhead plugins restart` and the next hook: the old host killed, a new one started and
// welcomed, the hook answered (a transform waits up to its 2 s deadline for the restart).
void BM_Restart(benchmark::State& state) {
  auto runner = runner_for(plugin(state), Json::object(), jail(state));
  for (auto _ : state) {
    runner->reload(plugin(state));
    benchmark::DoNotOptimize(runner->transform_caption("a cat"));
  }
  check_no_faults(state, *runner);
  if (runner->report()["plugins"][0]["hooks"]["transform_caption"]["skipped"].get<long>() > 0)
    state.SkipWithError("a restart took longer than the hook's deadline");
}

void BM_TransformCaption(benchmark::State& state) {
  auto runner = runner_for(plugin(state), Json::object(), jail(state));
  for (auto _ : state) benchmark::DoNotOptimize(runner->transform_caption("a cat"));
  check_no_faults(state, *runner);
}

void both(benchmark::internal::Benchmark* b) {
  for (int runtime : {0, 1})
    for (int full : {0, 1}) b->Args({runtime, full});
}

}  // namespace

BENCHMARK(BM_Start)->Apply(both)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Restart)->Apply(both)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TransformCaption)->Apply(both)->UseRealTime()->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::err);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
