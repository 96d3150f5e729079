#include "remote/host_server.hpp"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <optional>

#include <zmq_addon.hpp>

#include "common/log.hpp"
#include "supervisor/admission.hpp"
#include "supervisor/host_process.hpp"
#include "remote/relay.hpp"

namespace bulkhead {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

// A trainer pings every second: one silent this long is gone, and its host is ended.
constexpr auto kSilenceLimit = std::chrono::seconds(10);
// ZeroMQ's heartbeats, as on the trainer's side.
constexpr int kHeartbeatMs = 1000, kHeartbeatTimeoutMs = 3000;
// The exit status of a host that cannot load: what a refusal says, so that the trainer does not
// start it again and again.
constexpr int kExitLoadFailure = 78;

std::string peer_address(zmq::message_t& frame) {  // (gets() is not const)
  const char* address = frame.gets("Peer-Address");
  return address ? address : "?";
}

}  // namespace

struct HostServer::Impl {
  // One trainer connection's host.
  struct Session {
    int number = 0;
    std::string trainer;  // who, for the log: its address and key
    std::string zap_domain;
    zmq::socket_t socket;  // bound here; the host connects with the trainer's token
    std::unique_ptr<HostProcess> process;
    Clock::time_point heard = Clock::now();

    ~Session() {
      process.reset();  // killed and reaped while its socket still exists
      socket.close();
      AdmissionCheck::instance().forget(zap_domain);
    }
  };

  HostServerSettings settings;
  std::shared_ptr<spdlog::logger> log = logger("host-server");
  fs::path runtime_dir;
  std::string zap_domain;
  zmq::socket_t router;
  std::map<std::string, std::unique_ptr<Session>> sessions;  // by the trainer connection's routing id
  int started = 0;

  explicit Impl(HostServerSettings s) : settings(std::move(s)) {
    std::string pattern = (fs::temp_directory_path() / "bulkhead-serve-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("cannot create a runtime folder in " + fs::temp_directory_path().string());
    runtime_dir = pattern;
    const bool curve = !settings.secret_key.empty();
    if (curve) zap_domain = AdmissionCheck::instance().admit({"", {}, settings.allowed_clients});
    try {
      router = bind_admitted(zmq::socket_type::router, settings.listen, std::int64_t(settings.limits.max_message_mb) << 20,
                             Admission{}, zap_domain, settings.secret_key);
    } catch (const zmq::error_t& e) {
      fs::remove_all(runtime_dir);
      throw std::runtime_error("cannot listen on " + settings.listen + ": " + e.what());
    }
    router.set(zmq::sockopt::heartbeat_ivl, kHeartbeatMs);
    router.set(zmq::sockopt::heartbeat_timeout, kHeartbeatTimeoutMs);
    router.set(zmq::sockopt::heartbeat_ttl, kHeartbeatTimeoutMs);
  }

  ~Impl() {
    sessions.clear();
    router.close();
    if (!zap_domain.empty()) AdmissionCheck::instance().forget(zap_domain);
    std::error_code ignored;
    fs::remove_all(runtime_dir, ignored);
  }

  void tell(const std::string& peer, const std::string& method, Json params) {
    wire::Frames frames = relay::encode(method, std::move(params));
    frames.insert(frames.begin(), zmq::message_t(peer.data(), peer.size()));
    zmq::send_multipart(router, frames, zmq::send_flags::dontwait);
  }

  // The trainers' messages: the relay's own are for the server, the others go to the host.
  void read_trainers() {
    for (;;) {
      wire::Frames frames;
      if (!zmq::recv_multipart(router, std::back_inserter(frames), zmq::recv_flags::dontwait)) return;
      if (frames.size() < 2) continue;
      const std::string peer = frames[0].to_string();
      const auto session = sessions.find(peer);
      if (session != sessions.end()) session->second->heard = Clock::now();
      frames.erase(frames.begin());
      if (relay::is_relay(frames)) {
        heard(peer, frames);
      } else if (session != sessions.end()) {
        zmq::send_multipart(session->second->socket, frames, zmq::send_flags::dontwait);
      } else {
        log->warn("dropped a message from {}, which has no host (its first message must be {})", peer_address(frames[0]),
                  relay::kOpen);
      }
    }
  }

  void heard(const std::string& peer, wire::Frames& frames) {
    wire::Message message;
    try {
      message = relay::decode(frames);
    } catch (const wire::DecodeError& e) {
      log->warn("a broken message from {}: {}", peer_address(frames[1]), e.what());
      return;
    }
    const auto found = sessions.find(peer);
    Session* session = found == sessions.end() ? nullptr : found->second.get();
    if (message.method == relay::kOpen) {
      open(peer, message.params, frames[1]);
    } else if (message.method == relay::kClose && session) {
      log->info("host {} for {}: the trainer closed its connection", session->number, session->trainer);
      sessions.erase(found);
    } else if (message.method == relay::kKill && session) {
      session->process->kill_group();
    } else if (message.method == relay::kTerminate && session) {
      // Waits here for up to its grace (at most 10 s): only a stopping trainer asks.
      const auto grace = std::min<std::int64_t>(message.params.value("grace_ms", 2000), 10000);
      session->process->terminate(std::chrono::milliseconds(grace));
    }
  }

  void refuse(const std::string& peer, const std::string& who, const std::string& why, bool retry_cannot_help) {
    log->warn("refused {}: {}", who, why);
    tell(peer, relay::kEnded,
         {{"description", "refused: " + why}, {"exit_status", retry_cannot_help ? Json(kExitLoadFailure) : Json()}, {"last_error_line", why}});
  }

  void open(const std::string& peer, const Json& params, zmq::message_t& frame) {
    const char* key = frame.gets("User-Id");
    const std::string who = peer_address(frame) + (key && *key ? " (key " + std::string(key) + ")" : "");
    if (sessions.count(peer)) return log->warn("{} asked for a second host on one connection: ignored", who);
    const std::string plugin = params.value("plugin", ""), token = params.value("token", "");
    if (const Json version = params.value("relay", Json()); version != relay::kVersion)
      return refuse(peer, who, "this server speaks relay version " + std::to_string(relay::kVersion) + ", the trainer " +
                                   version.dump() + ": run the same Bulkhead release on both machines",
                    true);
    if (plugin != settings.plugin.name)
      return refuse(peer, who, "this server serves plugin '" + settings.plugin.name + "', not '" + plugin + "'", true);
    if (token.empty() || token.size() > 256) return refuse(peer, who, std::string(relay::kOpen) + " carries no token", true);
    if (int(sessions.size()) >= settings.max_hosts)
      return refuse(peer, who, "it runs at most " + std::to_string(settings.max_hosts) + " hosts at once (--max-hosts)", false);
    try {
      auto session = start(token);
      session->trainer = who;
      log->info("host {} for {} started ({})", session->number, who, session->process->where());
      sessions[peer] = std::move(session);
    } catch (const std::exception& e) {
      return refuse(peer, who, std::string("its host could not start: ") + e.what(), true);
    }
    const fs::path scratch = settings.jail.mode == JailSettings::Mode::full ? kJailScratchDir : scratch_folder(started);
    tell(peer, relay::kOpened,
         {{"plugin", settings.plugin.name}, {"version", settings.plugin.version}, {"runtime", settings.plugin.runtime},
          {"options", settings.plugin.options}, {"scratch_dir", scratch.string()}});
  }

  fs::path scratch_folder(int number) const { return runtime_dir / ("scratch-" + std::to_string(number)); }

  // A host jailed as the trainer jails a local one, without the shared memory that cannot reach
  // another machine: its images and tensors travel in the messages.
  std::unique_ptr<Session> start(const std::string& token) {
    auto session = std::make_unique<Session>();
    session->number = ++started;
    const bool jailed = settings.jail.mode == JailSettings::Mode::full;
    const PluginIdentity identity = jailed ? plugin_identity(settings.jail) : PluginIdentity{};
    const fs::path socket_dir = host_socket_folder(runtime_dir, settings.plugin.name, session->number, identity);
    const std::string endpoint = host_endpoint(socket_dir);
    Admission admission{token, {}, {}};
    session->zap_domain = AdmissionCheck::instance().admit(admission);
    session->socket = bind_admitted(zmq::socket_type::dealer, endpoint, std::int64_t(settings.limits.max_message_mb) << 20,
                                    admission, session->zap_domain);
    ::chmod((socket_dir / "plugin.sock").c_str(), 0666);
    const fs::path scratch = scratch_folder(session->number);
    fs::create_directory(scratch);
    ::chmod(scratch.c_str(), 0700);
    if (identity.uid >= 0 && ::chown(scratch.c_str(), identity.uid, identity.gid) != 0)
      throw std::runtime_error("cannot hand " + scratch.string() + " to the plugin's user: " + std::strerror(errno));
    HostLaunch launch{settings.plugin, settings.limits, jailed ? host_endpoint(kJailSocketDir) : endpoint, token,
                      jailed ? kJailScratchDir : scratch, {fs::current_path()}, settings.python, settings.jail, identity,
                      settings.granted, socket_dir, settings.plugin.name + "-" + std::to_string(session->number), scratch,
                      nullptr, nullptr, -1};
    session->process = std::make_unique<HostProcess>(launch);
    return session;
  }

  // A host's messages, to its trainer. An empty first frame is the server's alone: dropped.
  void read_host(const std::string& peer, Session& session) {
    for (;;) {
      wire::Frames frames;
      if (!zmq::recv_multipart(session.socket, std::back_inserter(frames), zmq::recv_flags::dontwait)) return;
      if (frames.empty()) continue;
      if (frames[0].size() == 0) {
        log->warn("host {} for {} sent a message that starts with an empty frame, which only the server may send: dropped",
                  session.number, session.trainer);
        continue;
      }
      frames.insert(frames.begin(), zmq::message_t(peer.data(), peer.size()));
      zmq::send_multipart(router, frames, zmq::send_flags::dontwait);
    }
  }

  // Hosts that ended are said so to their trainers; a trainer gone silent has its host ended.
  void look_after_hosts() {
    const auto now = Clock::now();
    for (auto it = sessions.begin(); it != sessions.end();) {
      Session& session = *it->second;
      if (!session.process->running()) {
        read_host(it->first, session);  // what it sent before it ended goes first
        const std::string how = session.process->exit_description();
        const auto status = session.process->exit_status();
        log->info("host {} for {} ended: {}", session.number, session.trainer, how);
        tell(it->first, relay::kEnded,
             {{"description", how}, {"exit_status", status ? Json(*status) : Json()}, {"last_error_line", session.process->last_error_line()}});
        it = sessions.erase(it);
      } else if (now - session.heard > kSilenceLimit) {
        log->warn("host {} for {}: the trainer has been silent for {} s; ending its host", session.number, session.trainer,
                  std::chrono::duration_cast<std::chrono::seconds>(kSilenceLimit).count());
        it = sessions.erase(it);
      } else {
        ++it;
      }
    }
  }

  void serve(const std::function<bool()>& stopping) {
    while (!stopping()) {
      std::vector<zmq::pollitem_t> items{{router.handle(), 0, ZMQ_POLLIN, 0}};
      std::vector<std::pair<std::string, Session*>> polled;
      for (auto& [peer, session] : sessions) {
        items.push_back({session->socket.handle(), 0, ZMQ_POLLIN, 0});
        polled.emplace_back(peer, session.get());
      }
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(100));
      for (std::size_t i = 0; i < polled.size(); ++i)
        if (items[i + 1].revents & ZMQ_POLLIN) read_host(polled[i].first, *polled[i].second);
      // After the hosts' turn: a trainer's close or kill may end a session polled above.
      if (items[0].revents & ZMQ_POLLIN) read_trainers();
      look_after_hosts();
    }
    for (auto& [peer, session] : sessions) tell(peer, relay::kEnded, {{"description", "the server stopped"}});
  }
};

HostServer::HostServer(HostServerSettings settings) : impl_(std::make_unique<Impl>(std::move(settings))) {}
HostServer::~HostServer() = default;

std::string HostServer::endpoint() const { return impl_->router.get(zmq::sockopt::last_endpoint); }

void HostServer::serve(const std::function<bool()>& stopping) { impl_->serve(stopping); }

}  // namespace bulkhead
