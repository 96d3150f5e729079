// model_region_bench — model access's tensor data (docs/protocol.md, section 9.4): the same bytes
// handed to another process and taken back, through the sealed shared region (the message carries
// only where they are) and inline in the message (MessagePack bin over ZeroMQ), in the same run.
//
//   build/bin/model_region_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
//
// Each iteration is what one on_model_step costs the trainer for `size` bytes of rows and a reply
// that writes as many back: region: write into a lent slot, a round trip of a small message to the
// peer process, copy out of the slot (what the gate does before checking); inline: encode the bytes
// into a message, the round trip (the peer echoes it), decode the reply. The peer is a forked DEALER
// that sends back every message it gets.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <zmq.hpp>

#include <bulkhead/wire.hpp>

#include "supervisor/shared_region.hpp"

#include "bench_support.hpp"

namespace fs = std::filesystem;
using bulkhead::Json;

namespace {

// A peer process echoing messages on `endpoint`, and the trainer's end of the socket.
struct Peer {
  fs::path dir = fs::temp_directory_path() / ("region-bench-" + std::to_string(getpid()));
  std::string endpoint;
  pid_t pid = -1;
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::dealer};

  Peer() {
    fs::create_directories(dir);
    endpoint = "ipc://" + (dir / "echo.sock").string();
    socket.set(zmq::sockopt::linger, 0);
    socket.bind(endpoint);
    pid = fork();
    if (pid == 0) _exit(bulkhead::bench::echo_until_quit(endpoint));
  }
  ~Peer() {
    socket.send(zmq::buffer("quit", 4), zmq::send_flags::none);
    int status = 0;
    waitpid(pid, &status, 0);
    fs::remove_all(dir);
  }
  std::string round_trip(const std::string& request) {
    socket.send(zmq::buffer(request), zmq::send_flags::none);
    zmq::message_t reply;
    (void)socket.recv(reply);
    return reply.to_string();
  }
};

Json update(Json tensor) {
  return {{"parameter", "caption.words.weight"}, {"rows", {31}}, {"mode", "replace"}, {"based_on_step", 1},
          {"tensor", std::move(tensor)}};
}

void BM_Region(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  Peer peer;
  bulkhead::SharedRegion region(2, std::max<std::size_t>(size, 4096));
  const std::vector<std::uint8_t> rows(size, 7);
  std::vector<std::uint8_t> taken;
  for (auto _ : state) {
    const int slot = *region.lend();
    std::memcpy(region.slot_data(slot), rows.data(), size);
    const Json where = {{"dtype", "float32"}, {"shape", {1, size / 4}},
                        {"slot", {{"index", slot}, {"offset", 0}, {"bytes", size}}}};
    const std::string reply = peer.round_trip(
        bulkhead::wire::encode(bulkhead::wire::Message::response(1, {{"updates", {update(where)}}})));
    const auto message = bulkhead::wire::decode(reply.data(), reply.size());
    const Json& ref = message.result["updates"][0]["tensor"]["slot"];
    if (!region.copy_out(ref["index"], ref["offset"], ref["bytes"], taken).empty()) state.SkipWithError("copy_out");
    region.give_back(slot);
    benchmark::DoNotOptimize(taken.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size * 2));
}

void BM_Inline(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  Peer peer;
  const std::vector<std::uint8_t> rows(size, 7);
  std::vector<std::uint8_t> taken;
  for (auto _ : state) {
    const Json tensor = {{"dtype", "float32"}, {"shape", {1, size / 4}}, {"data", Json::binary(rows)}};
    const std::string reply = peer.round_trip(
        bulkhead::wire::encode(bulkhead::wire::Message::response(1, {{"updates", {update(tensor)}}})));
    const auto message = bulkhead::wire::decode(reply.data(), reply.size());
    taken = message.result["updates"][0]["tensor"]["data"].get_binary();
    benchmark::DoNotOptimize(taken.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size * 2));
}

}  // namespace

BENCHMARK(BM_Region)->Arg(2 << 10)->Arg(100 << 20)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Inline)->Arg(2 << 10)->Arg(100 << 20)->UseRealTime()->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
