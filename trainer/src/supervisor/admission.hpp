// admission.hpp — who may connect to the trainer's sockets, decided before any message passes.
//
// ZeroMQ asks a ZAP handler (RFC 27) about every connection made to a server socket that names a
// ZAP domain. This process has one handler, on the shared context: each socket registers its own
// domain with what it admits, and forgets it when it closes.
//
//   const std::string domain = AdmissionCheck::instance().admit({.token = token});
//   socket.set(zmq::sockopt::zap_domain, domain);
#pragma once

#include <functional>
#include <set>
#include <string>

#include <zmq.hpp>

namespace bulkhead {

// The context every socket of the supervisor and the remote host server lives in: the ZAP
// handler serves only sockets of its own context.
zmq::context_t& shared_context();

// Who may connect to one socket (docs/protocol.md, section 2 and Remote hosts).
struct Admission {
  // Non-empty: the ZeroMQ PLAIN password a connection must present (protocol 2 and later).
  std::string token;
  // With no token: connections without credentials (protocol 1), each admitted when this says
  // that the process that made it (the kernel's word, SO_PEERCRED) is one of the host's.
  std::function<bool(long pid)> process_is_host;
  // A CURVE server socket (bulkhead host serve): the clients' public keys (Z85) it admits.
  std::set<std::string> curve_clients;
};

// A socket of `type` bound at `endpoint` whose connections `admission` admits, through
// `zap_domain` (from AdmissionCheck::admit). With a CURVE secret key it is a CURVE server (its
// admission lists the client keys), with a token a PLAIN one, else it takes connections without
// credentials.
zmq::socket_t bind_admitted(zmq::socket_type type, const std::string& endpoint, std::int64_t max_message_bytes,
                            const Admission& admission, const std::string& zap_domain, const std::string& curve_secret_key = "");

class AdmissionCheck {
 public:
  static AdmissionCheck& instance();
  // A fresh ZAP domain whose connections `admission` admits.
  std::string admit(Admission admission);
  // The domain's socket is closed. Waits for a check of it under way.
  void forget(const std::string& domain);

 private:
  AdmissionCheck();
  struct Impl;
  Impl* impl_;  // never destroyed: its thread serves until the process exits
};

}  // namespace bulkhead
