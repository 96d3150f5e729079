#include "supervisor/admission.hpp"

#include <array>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <zmq_addon.hpp>

#include <bulkhead/wire.hpp>

namespace bulkhead {

zmq::context_t& shared_context() {
  static zmq::context_t context(1);
  return context;
}

zmq::socket_t bind_admitted(zmq::socket_type type, const std::string& endpoint, std::int64_t max_message_bytes,
                            const Admission& admission, const std::string& zap_domain, const std::string& curve_secret_key) {
  zmq::socket_t socket(shared_context(), type);
  socket.set(zmq::sockopt::linger, 0);
  if (max_message_bytes > 0) socket.set(zmq::sockopt::maxmsgsize, max_message_bytes);
  if (!curve_secret_key.empty()) {
    socket.set(zmq::sockopt::curve_server, 1);
    socket.set(zmq::sockopt::curve_secretkey, curve_secret_key);
  } else if (!admission.token.empty()) {
    socket.set(zmq::sockopt::plain_server, 1);
  }
  if (!zap_domain.empty()) socket.set(zmq::sockopt::zap_domain, zap_domain);
  socket.bind(endpoint);
  return socket;
}

struct AdmissionCheck::Impl {
  zmq::socket_t socket{shared_context(), zmq::socket_type::rep};
  std::mutex mutex;
  std::map<std::string, Admission> admissions;
  long next = 0;

  // The peer's pid from a ZAP address: libzmq ends an ipc peer's with ":uid:gid:pid".
  static long peer_pid(const std::string& address) {
    const auto colon = address.rfind(':');
    return colon == std::string::npos ? 0 : std::atol(address.c_str() + colon + 1);
  }

  static std::string z85(const zmq::message_t& key) {
    if (key.size() != 32) return {};
    std::array<char, 41> text{};
    zmq_z85_encode(text.data(), static_cast<const std::uint8_t*>(key.data()), key.size());
    return text.data();
  }

  // request: version, request id, domain, address, identity, mechanism, then the mechanism's credentials.
  // A CURVE client's key, as its messages' "User-Id" then says; else empty.
  static std::string user_id(const std::vector<zmq::message_t>& request) {
    return request.size() > 6 && request[5].to_string_view() == "CURVE" ? z85(request[6]) : std::string();
  }

  bool admits(const std::vector<zmq::message_t>& request) {
    auto text = [&](std::size_t i) { return i < request.size() ? request[i].to_string() : std::string(); };
    // Held through the process check too, so that forget() waits for it: the check reads the
    // host, which its owner destroys after forgetting it.
    std::lock_guard<std::mutex> lock(mutex);
    const auto found = admissions.find(text(2));
    if (found == admissions.end()) return false;
    const Admission& admission = found->second;
    const std::string mechanism = text(5);
    if (!admission.curve_clients.empty())
      return mechanism == "CURVE" && request.size() > 6 && admission.curve_clients.count(z85(request[6])) > 0;
    if (!admission.token.empty())
      return mechanism == "PLAIN" && text(6) == wire::kPlainUser && text(7) == admission.token;
    return mechanism == "NULL" && admission.process_is_host && admission.process_is_host(peer_pid(text(3)));
  }

  void serve() {
    for (;;) {
      std::vector<zmq::message_t> request;
      try {
        if (!zmq::recv_multipart(socket, std::back_inserter(request))) continue;
      } catch (const zmq::error_t&) {
        socket.close();  // the context is ending with the process, and waits for this socket
        return;
      }
      const bool ok = admits(request);
      const std::string user = ok ? user_id(request) : std::string();
      std::array<zmq::const_buffer, 6> reply = {zmq::str_buffer("1.0"), zmq::buffer(request.size() > 1 ? request[1].to_string_view() : ""),
                                                zmq::buffer(std::string_view(ok ? "200" : "400")),
                                                zmq::buffer(std::string_view(ok ? "OK" : "not admitted")), zmq::buffer(user),
                                                zmq::str_buffer("")};
      zmq::send_multipart(socket, reply);
    }
  }
};

AdmissionCheck& AdmissionCheck::instance() {
  static AdmissionCheck* check = new AdmissionCheck;
  return *check;
}

AdmissionCheck::AdmissionCheck() : impl_(new Impl) {
  impl_->socket.set(zmq::sockopt::linger, 0);
  impl_->socket.bind("inproc://zeromq.zap.01");
  std::thread([impl = impl_] { impl->serve(); }).detach();
}

std::string AdmissionCheck::admit(Admission admission) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const std::string domain = "bulkhead-" + std::to_string(impl_->next++);
  impl_->admissions[domain] = std::move(admission);
  return domain;
}

void AdmissionCheck::forget(const std::string& domain) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->admissions.erase(domain);
}

}  // namespace bulkhead
