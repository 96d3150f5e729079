// runner_bench — what a hook costs through the runner, against the floor: a raw ZeroMQ round trip
// between two processes, measured in the same run.
//
//   build/bin/runner_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//
// The floor's peer is this same binary started as `runner_bench --echo ENDPOINT`: a DEALER that
// sends back every message it gets. The runner's benchmarks use real plugin hosts: the recorder
// test plugin (C++, does nothing with record_to ""), noop-python and noop-node (the same nothing
// through the Python and JavaScript SDKs), image_colour (C++) and color_grade (Python).
// Supervision's own cost: the same call hook over a bare Connection to the same host, without
// the runner (no deadline bookkeeping, reply validation, counters or restarts).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include <bulkhead/heap.hpp>
#include <bulkhead/wire.hpp>

#include "common/paths.hpp"
#include "supervisor/connection.hpp"
#include "supervisor/host_process.hpp"
#include "supervisor/manifest.hpp"
#include "supervisor/plugin_runner.hpp"

#include "bench_support.hpp"

namespace fs = std::filesystem;
using bulkhead::Json;
using bulkhead::bench::check_no_faults;
using bulkhead::bench::runner_for;

namespace {

std::string self_path;

int echo_main(const std::string& endpoint) { return bulkhead::bench::echo_until_quit(endpoint); }

// The same bytes a transform_caption request carries.
std::string caption_request() {
  return bulkhead::wire::encode(bulkhead::wire::Message::request(1, "transform_caption", {{"caption", "a photo of a cat, sitting"}}));
}

std::string image_request(int side) {
  bulkhead::Image image;
  image.width = image.height = side;
  image.data.assign(image.expected_size(), 128);
  return bulkhead::wire::encode(
      bulkhead::wire::Message::request(1, "transform_pil_image", {{"image", bulkhead::wire::image_to_json(image)}}));
}

// Floor: a DEALER/DEALER round trip over ipc:// to a second process (send, wait, receive).
void raw_round_trip(benchmark::State& state, const std::string& payload) {
  const fs::path dir = fs::temp_directory_path() / ("runner-bench-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string endpoint = "ipc://" + (dir / "echo.sock").string();
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.bind(endpoint);
  const pid_t child = fork();
  if (child == 0) {
    execl(self_path.c_str(), self_path.c_str(), "--echo", endpoint.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (auto _ : state) {
    socket.send(zmq::buffer(payload), zmq::send_flags::none);
    zmq::message_t reply;
    (void)socket.recv(reply);
    benchmark::DoNotOptimize(reply.data());
  }
  socket.send(zmq::str_buffer("quit"), zmq::send_flags::none);
  int status = 0;
  waitpid(child, &status, 0);
  fs::remove_all(dir);
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(payload.size()) * 2);
}

void BM_Floor_RawZmqRoundTrip(benchmark::State& state) { raw_round_trip(state, caption_request()); }
// The same bytes as an image request of side state.range(0), in one frame.
void BM_Floor_RawZmqRoundTrip_Image(benchmark::State& state) { raw_round_trip(state, image_request(int(state.range(0)))); }

Json epoch_kwargs() {
  return {{"epoch", 0}, {"global_step", 0}, {"epoch_length", 10}, {"project_name", "bench"}, {"log_folder", "/tmp"},
          {"data_root", "/tmp"}};
}

Json step_kwargs() {
  return {{"epoch", 0}, {"local_step", 1}, {"global_step", 1}, {"project_name", "bench"}, {"log_folder", "/tmp"},
          {"data_root", "/tmp"}, {"batch", {{"captions", {"a cat"}}, {"shape", {1, 3, 64, 64}}}},
          {"ed_state", {{"grad_accum", 1}, {"lr", 0.001}, {"batch_size", 1}}}, {"loss", 0.5}, {"lr", 0.001},
          {"step_time_s", 0.01}, {"samples_per_s", 100.0}};
}

// A call hook (the trainer waits) through the runner to a C++ plugin.
void call_hook(benchmark::State& state, bulkhead::JailSettings::Mode jail) {
  auto runner = runner_for("recorder", Json::object(), jail);
  const Json kwargs = epoch_kwargs();
  for (auto _ : state) runner->call("on_epoch_start", kwargs);
  check_no_faults(state, *runner);
}
void BM_Runner_CallHook_Cpp(benchmark::State& state) { call_hook(state, bulkhead::JailSettings::Mode::full); }
// The same in the weak jail, for the comparison below.
void BM_Runner_CallHook_Cpp_WeakJail(benchmark::State& state) { call_hook(state, bulkhead::JailSettings::Mode::weak); }

// The same call hook over a bare Connection to the same kind of host (in the weak jail): what
// the runner's supervision (validation, counters, fault handling) adds is the difference with
// BM_Runner_CallHook_Cpp_WeakJail.
void BM_Unsupervised_CallHook_Cpp(benchmark::State& state) {
  setenv("BULKHEAD_PLUGINS_PATH", (bulkhead::paths::home() / "tests" / "plugins").c_str(), 1);
  const fs::path dir = fs::temp_directory_path() / ("runner-bench-bare-" + std::to_string(getpid()));
  fs::create_directories(dir);
  bulkhead::HostLaunch launch;
  launch.manifest = bulkhead::PluginCatalog(bulkhead::plugin_dirs_from_environment()).resolve("recorder");
  launch.endpoint = "ipc://" + (dir / "bare.sock").string();
  launch.token = "bench";
  launch.scratch_dir = dir;
  launch.jail.mode = bulkhead::JailSettings::Mode::weak;
  {
    bulkhead::Connection connection(launch.endpoint, 64 << 20, {launch.token, {}, {}}, {});
    bulkhead::HostProcess host(launch);
    if (!connection.await_hello(std::chrono::seconds(10), [&] { return host.running(); })) {
      state.SkipWithError("the host sent no hello");
      return;
    }
    connection.answer_hello(nullptr, {{"protocol", 1}, {"options", Json::object()}, {"scratch_dir", dir.string()}});
    const Json kwargs = epoch_kwargs();
    long failed = 0;
    for (auto _ : state)
      failed += connection.call("on_epoch_start", kwargs, std::chrono::seconds(2)).status != bulkhead::Reply::Status::ok;
    if (failed > 0) state.SkipWithError("calls failed");
    connection.notify("shutdown", {{"reason", "benchmark done"}});
    host.wait_for_exit(std::chrono::seconds(2));
  }
  fs::remove_all(dir);
}

// A step hook, waited for, through each runtime's SDK: the round trip a plugin author pays for.
void step_hook(benchmark::State& state, const std::string& entry) {
  auto runner = runner_for(entry);
  const Json kwargs = step_kwargs();
  for (auto _ : state) runner->call("on_step_end", kwargs);
  check_no_faults(state, *runner);
}
void BM_Runner_StepHook_Cpp(benchmark::State& state) { step_hook(state, "recorder"); }
void BM_Runner_StepHook_Python(benchmark::State& state) { step_hook(state, "noop-python"); }
void BM_Runner_StepHook_Node(benchmark::State& state) { step_hook(state, "noop-node"); }

// A transform through the runner to a C++ plugin: the same bytes as the floor's payload.
void BM_Runner_TransformCaption_Cpp(benchmark::State& state) {
  auto runner = runner_for("recorder");
  for (auto _ : state) benchmark::DoNotOptimize(runner->transform_caption("a photo of a cat, sitting"));
  check_no_faults(state, *runner);
}

// A loader batch's captions through a transform, state.range(0) of them in one transform_captions
// (docs/protocol.md, section 3.7): what batching saves per caption. bench/report.py divides the
// time by the batch's size; a batch of 1 is one caption a message, the floor.
void caption_batch(benchmark::State& state, const std::string& entry) {
  auto runner = runner_for(entry);
  const std::vector<std::string> captions(std::size_t(state.range(0)), "a photo of a cat, sitting");
  for (auto _ : state) benchmark::DoNotOptimize(runner->transform_captions(captions));
  state.SetItemsProcessed(std::int64_t(state.iterations()) * state.range(0));
  check_no_faults(state, *runner);
}
void BM_Runner_TransformCaptions_Cpp(benchmark::State& state) { caption_batch(state, "recorder"); }
void BM_Runner_TransformCaptions_Python(benchmark::State& state) { caption_batch(state, "noop-python"); }
void BM_Runner_TransformCaptions_Node(benchmark::State& state) { caption_batch(state, "noop-node"); }

// A notify hook: what it costs the caller (the reply is handled on the I/O thread).
void BM_Runner_NotifyHook_CallerCost(benchmark::State& state) {
  auto runner = runner_for("recorder");
  const Json kwargs = step_kwargs();
  for (auto _ : state) runner->notify("on_step_end", kwargs);
  // (timing stopped with the loop) let the acknowledgements drain before the report is read
  for (int i = 0; i < 1000; ++i) {
    const Json c = runner->report()["plugins"][0]["hooks"]["on_step_end"];
    if (c["ok"].get<long>() + c["timeouts"].get<long>() + c["crashes"].get<long>() >= c["calls"].get<long>()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  check_no_faults(state, *runner);
}

// A square RGB image of side state.range(0) through a transform, there and back: through the
// host's image region (docs/protocol.md, section 2.2), or with it off, in the message.
void image_transform(benchmark::State& state, const std::string& entry, Json options = Json::object(),
                     bool image_region = true) {
  auto runner = runner_for(entry, std::move(options), bulkhead::JailSettings::Mode::full, 1, image_region);
  bulkhead::Image image;
  image.width = image.height = int(state.range(0));
  image.data.assign(image.expected_size(), 128);
  for (auto _ : state) benchmark::DoNotOptimize(runner->transform_pil_image(image));
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(image.data.size()) * 2);
  check_no_faults(state, *runner);
}

void BM_Runner_TransformImage_CppPassThrough(benchmark::State& state) { image_transform(state, "recorder"); }
void BM_Runner_TransformImage_CppImageColour(benchmark::State& state) {
  image_transform(state, "image_colour", {{"gamma", 1.1}, {"saturation", 1.1}});
}
void BM_Runner_TransformImage_PythonPassThrough(benchmark::State& state) { image_transform(state, "noop-python"); }
void BM_Runner_TransformImage_NodePassThrough(benchmark::State& state) { image_transform(state, "noop-node"); }
void BM_Runner_TransformImage_PythonColorGrade(benchmark::State& state) { image_transform(state, "color_grade"); }
void BM_Runner_TransformImage_CppInMessage(benchmark::State& state) { image_transform(state, "recorder", Json::object(), false); }
void BM_Runner_TransformImage_PythonInMessage(benchmark::State& state) { image_transform(state, "noop-python", Json::object(), false); }
void BM_Runner_TransformImage_NodeInMessage(benchmark::State& state) { image_transform(state, "noop-node", Json::object(), false); }

// Images per second from 4 loader threads through color_grade (Python, PIL work on each 256x256
// image), by pool size (train.json "pool"); pool 0: no plugin at all, what the loader does alone.
void BM_Pool_ColorGrade_4Loaders(benchmark::State& state) {
  const int pool = int(state.range(0));
  auto runner = pool == 0 ? std::make_unique<bulkhead::PluginRunner>(std::vector<bulkhead::PluginSettings>{}, bulkhead::RunInfo{})
                          : runner_for("color_grade", Json::object(), bulkhead::JailSettings::Mode::full, pool);
  bulkhead::Image image;
  image.width = image.height = 256;
  image.data.assign(image.expected_size(), 128);
  constexpr int kLoaders = 4, kEach = 8;
  for (auto _ : state) {
    std::vector<std::thread> loaders;
    for (int t = 0; t < kLoaders; ++t)
      loaders.emplace_back([&] {
        for (int i = 0; i < kEach; ++i) benchmark::DoNotOptimize(runner->transform_pil_image(image));
      });
    for (auto& loader : loaders) loader.join();
  }
  state.SetItemsProcessed(std::int64_t(state.iterations()) * kLoaders * kEach);
  check_no_faults(state, *runner);
}

}  // namespace

BENCHMARK(BM_Floor_RawZmqRoundTrip)->UseRealTime();
BENCHMARK(BM_Unsupervised_CallHook_Cpp)->UseRealTime();
BENCHMARK(BM_Runner_CallHook_Cpp_WeakJail)->UseRealTime();
BENCHMARK(BM_Runner_CallHook_Cpp)->UseRealTime();
BENCHMARK(BM_Runner_StepHook_Cpp)->UseRealTime();
BENCHMARK(BM_Runner_StepHook_Python)->UseRealTime();
BENCHMARK(BM_Runner_StepHook_Node)->UseRealTime();
BENCHMARK(BM_Runner_TransformCaption_Cpp)->UseRealTime();
BENCHMARK(BM_Runner_TransformCaptions_Cpp)->UseRealTime()->Arg(1)->Arg(32);
BENCHMARK(BM_Runner_TransformCaptions_Python)->UseRealTime()->Arg(1)->Arg(32);
BENCHMARK(BM_Runner_TransformCaptions_Node)->UseRealTime()->Arg(1)->Arg(32);
BENCHMARK(BM_Runner_NotifyHook_CallerCost)->UseRealTime()->Iterations(20000);
// Image sides: 64, 256, 512, 1024 (12 KB to 3 MB of RGB); the work-doing plugins at 256 only.
BENCHMARK(BM_Floor_RawZmqRoundTrip_Image)->UseRealTime()->Arg(64)->Arg(256)->Arg(512)->Arg(1024);
BENCHMARK(BM_Runner_TransformImage_CppPassThrough)->UseRealTime()->Arg(64)->Arg(256)->Arg(512)->Arg(1024);
BENCHMARK(BM_Runner_TransformImage_PythonPassThrough)->UseRealTime()->Arg(64)->Arg(256)->Arg(512)->Arg(1024);
BENCHMARK(BM_Runner_TransformImage_NodePassThrough)->UseRealTime()->Arg(64)->Arg(256)->Arg(512)->Arg(1024);
BENCHMARK(BM_Runner_TransformImage_CppInMessage)->UseRealTime()->Arg(256)->Arg(512)->Arg(1024);
BENCHMARK(BM_Runner_TransformImage_PythonInMessage)->UseRealTime()->Arg(256)->Arg(512)->Arg(1024);
BENCHMARK(BM_Runner_TransformImage_NodeInMessage)->UseRealTime()->Arg(256)->Arg(512)->Arg(1024);
BENCHMARK(BM_Runner_TransformImage_CppImageColour)->UseRealTime()->Arg(256);
BENCHMARK(BM_Runner_TransformImage_PythonColorGrade)->UseRealTime()->Arg(256);

BENCHMARK(BM_Pool_ColorGrade_4Loaders)->UseRealTime()->Arg(0)->Arg(1)->Arg(2)->Arg(4);

int main(int argc, char** argv) {
  bulkhead::keep_large_buffers_in_heap();  // as the trainer does (the floor's echo peer too)
  if (argc == 3 && std::string(argv[1]) == "--echo") return echo_main(argv[2]);
  self_path = fs::canonical("/proc/self/exe").string();
  signal(SIGPIPE, SIG_IGN);
  spdlog::set_level(spdlog::level::warn);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
