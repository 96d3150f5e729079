// The trainer's socket admits only the plugin it was made for: every connection must present
// that start's token (ZeroMQ PLAIN, checked by the trainer's ZAP handler) before any message passes.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include <bulkhead/wire.hpp>

#include "plugins/connection.hpp"

namespace bulkhead {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string endpoint(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("bulkhead-connection-test-" + std::to_string(getpid()));
  fs::create_directories(dir);
  return "ipc://" + (dir / name).string();
}

// A peer's hello, sent over a socket that presents `password`.
void say_hello(zmq::context_t& context, const std::string& at, const std::string& password) {
  wire::Channel peer(context, at, /*bind=*/false, -1, password);
  peer.send(wire::Message::request(0, "hello", {{"token", password}}));
  std::this_thread::sleep_for(300ms);  // linger 0: give the handshake and the message time to pass
}

TEST(Connection, APeerWithoutTheTokenIsNeverHeard) {
  const std::string at = endpoint("impostor.sock");
  Connection connection(at, 1 << 20, "the-real-token", {});
  zmq::context_t context;
  say_hello(context, at, "a-guessed-token");
  say_hello(context, at, "");  // no authentication at all
  EXPECT_FALSE(connection.await_hello(500ms, [] { return true; }).has_value()) << "a message passed without the token";
}

TEST(Connection, ThePeerWithTheTokenIsHeard) {
  const std::string at = endpoint("plugin.sock");
  Connection connection(at, 1 << 20, "the-real-token", {});
  zmq::context_t context;
  wire::Channel peer(context, at, /*bind=*/false, -1, "the-real-token");
  peer.send(wire::Message::request(0, "hello", {{"token", "the-real-token"}}));
  const auto hello = connection.await_hello(5s, [] { return true; });
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ((*hello)["token"], "the-real-token");
}

}  // namespace
}  // namespace bulkhead
