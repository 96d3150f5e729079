// The trainer's end of a plugin's socket: it admits only the plugin it was made for (every
// connection must present that start's token, ZeroMQ PLAIN, checked by the trainer's ZAP handler
// before any message passes), and many threads may call through it at once, each answered with
// its own reply within its own deadline, while notifications never wait.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <bulkhead/wire.hpp>

#include "supervisor/connection.hpp"

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

TEST(Connection, APeerWithAWrongTokenIsNeverHeardAndNamed) {
  const std::string at = endpoint("impostor.sock");
  Connection connection(at, 1 << 20, {"the-real-token", {}, {}}, {});
  zmq::context_t context;
  say_hello(context, at, "a-guessed-token");
  EXPECT_FALSE(connection.await_hello(500ms, [] { return true; }).has_value()) << "a message passed without the token";
  EXPECT_NE(connection.refused_connection().find("wrong PLAIN user name or password"), std::string::npos)
      << connection.refused_connection();
}

// A protocol-1 peer (no credentials) on a PLAIN socket: its hello can never pass, and the wait
// for it ends at once naming what is missing, not at its deadline.
TEST(Connection, APeerWithoutCredentialsEndsTheWaitNamingThem) {
  const std::string at = endpoint("no-credentials.sock");
  Connection connection(at, 1 << 20, {"the-real-token", {}, {}}, {});
  zmq::context_t context;
  std::thread peer([&] { say_hello(context, at, ""); });
  const auto started = std::chrono::steady_clock::now();
  try {
    connection.await_hello(10s, [] { return true; });
    ADD_FAILURE() << "the wait ended without WrongMechanism";
  } catch (const WrongMechanism& e) {
    EXPECT_NE(std::string(e.what()).find("without ZeroMQ PLAIN credentials"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("docs/protocol.md, section 2"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  peer.join();
}

TEST(Connection, ThePeerWithTheTokenIsHeard) {
  const std::string at = endpoint("plugin.sock");
  Connection connection(at, 1 << 20, {"the-real-token", {}, {}}, {});
  zmq::context_t context;
  wire::Channel peer(context, at, /*bind=*/false, -1, "the-real-token");
  peer.send(wire::Message::request(0, "hello", {{"token", "the-real-token"}}));
  const auto hello = connection.await_hello(5s, [] { return true; });
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ((*hello)["token"], "the-real-token");
}

// A socket without credentials (protocol 1) admits a connection by the process that made it, as
// the kernel names it: here the test's own, which the check owns or not.
TEST(Connection, WithoutCredentialsTheConnectingProcessIsJudged) {
  for (const bool owned : {true, false}) {
    const std::string at = endpoint(owned ? "owned.sock" : "stranger.sock");
    std::atomic<long> asked{0};
    Connection connection(at, 1 << 20, {"", [&, owned](long pid) { asked = pid; return owned; }, {}}, {});
    zmq::context_t context;
    wire::Channel peer(context, at, /*bind=*/false, -1, "");
    peer.send(wire::Message::request(0, "hello", {{"token", "t"}}));
    const auto hello = connection.await_hello(owned ? 5s : 500ms, [] { return true; });
    EXPECT_EQ(hello.has_value(), owned);
    EXPECT_EQ(asked.load(), static_cast<long>(getpid()));
    if (!owned) {
      EXPECT_NE(connection.refused_connection().find("not the plugin's"), std::string::npos) << connection.refused_connection();
    }
  }
}

TEST(Connection, APeerWithCredentialsOnASocketWithoutThemIsNamed) {
  const std::string at = endpoint("plain-on-null.sock");
  Connection connection(at, 1 << 20, {"", [](long) { return true; }, {}}, {});
  zmq::context_t context;
  std::thread peer([&] { say_hello(context, at, "a-token"); });
  EXPECT_THROW(connection.await_hello(10s, [] { return true; }), WrongMechanism);
  peer.join();
}

// A host in a thread: says hello, then answers each request with {"n": params.n} after sleeping
// params.ms, and counts "note" notifications, until "shutdown".
class PeerHost {
 public:
  explicit PeerHost(const std::string& at) : thread_([this, at] { serve(at); }) {}
  ~PeerHost() { thread_.join(); }
  int notes() const { return notes_; }

 private:
  void serve(const std::string& at) {
    zmq::context_t context;
    wire::Channel channel(context, at, /*bind=*/false, -1, "token");
    channel.send(wire::Message::request(0, "hello", {{"token", "token"}}));
    for (;;) {
      auto message = channel.receive(10s);
      if (!message || (message->is_notification() && message->method == "shutdown")) return;
      if (message->is_notification() && message->method == "note") ++notes_;
      if (!message->is_request()) continue;
      std::this_thread::sleep_for(std::chrono::milliseconds(message->params.value("ms", 0)));
      channel.send(wire::Message::response(message->id, {{"n", message->params["n"]}}));
    }
  }

  std::atomic<int> notes_{0};
  std::thread thread_;
};

struct Connected {
  explicit Connected(const std::string& name) : at(endpoint(name)), connection(at, 1 << 20, {"token", {}, {}}, {}), peer(at) {
    EXPECT_TRUE(connection.await_hello(5s, [] { return true; }).has_value());
    connection.answer_hello(nullptr, Json::object());
  }
  ~Connected() { connection.notify("shutdown", Json::object()); }

  std::string at;
  Connection connection;
  PeerHost peer;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(Connection, ManyThreadsCallAtOnceAndEachGetsItsOwnReply) {
  Connected c("threads.sock");
  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const int n = t * 1000 + i;
        const Reply reply = c.connection.call("echo", {{"n", n}}, 5s);
        if (reply.status != Reply::Status::ok || reply.result["n"] != n) ++wrong;
      }
    });
  for (auto& caller : callers) caller.join();
  EXPECT_EQ(wrong, 0);
}

// The host serves in order: a call queued behind a slow one still ends at its own deadline, and
// a notification sent meanwhile does not wait for either.
TEST(Connection, ACallBehindASlowOneKeepsItsDeadlineAndNotificationsNeverWait) {
  Connected c("slow.sock");
  std::thread slow([&] { EXPECT_EQ(c.connection.call("slow", {{"n", 1}, {"ms", 1500}}, 5s).status, Reply::Status::ok); });
  std::this_thread::sleep_for(200ms);  // the slow call holds the socket, waiting for its reply
  auto start = std::chrono::steady_clock::now();
  c.connection.notify("note", Json::object());
  EXPECT_LT(seconds_since(start), 0.5) << "a notification waited for a call";
  start = std::chrono::steady_clock::now();
  const Reply queued = c.connection.call("echo", {{"n", 2}}, 300ms);
  EXPECT_EQ(queued.status, Reply::Status::timeout);
  EXPECT_LT(seconds_since(start), 1.0) << "a call waited past its deadline behind another";
  slow.join();
  // Its late reply is dropped by id; the next call gets its own.
  const Reply next = c.connection.call("echo", {{"n", 3}}, 5s);
  EXPECT_EQ(next.status, Reply::Status::ok);
  EXPECT_EQ(next.result["n"], 3);
  EXPECT_EQ(c.peer.notes(), 1);
}

}  // namespace
}  // namespace bulkhead
