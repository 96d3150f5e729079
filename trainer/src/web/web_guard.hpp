// web_guard.hpp — who may use the web view (docs/web.md, "Security").
//
//   web::Guard guard("127.0.0.1", 8585);              // a fresh random token and CSRF token
//   if (auto refusal = guard.check(request)) ...      // 403: Host or Origin not ours, no CSRF token; 401: no token
//
// Jupyter's answer to the same problem: a token in the URL printed once (then a cookie), a Host
// check against DNS rebinding (a page on evil.example that resolves its name to 127.0.0.1), an
// Origin check and a CSRF token against cross-site requests. Ray's dashboard and job API, which
// checked nothing, ran the code of whoever reached its port (CVE-2023-48022).
#pragma once

#include <optional>
#include <set>
#include <string>

#include <httplib.h>

namespace bulkhead::web {

struct Refusal {
  int status = 403;
  std::string reason;
};

class Guard {
 public:
  static constexpr const char* kCookie = "bulkhead_token";
  static constexpr const char* kCsrfHeader = "X-CSRF-Token";

  // bound_host: the address the server listens on ("0.0.0.0": every interface, whose addresses and
  // this machine's name are then accepted as Host too); token: random when empty.
  Guard(const std::string& bound_host, int port, std::string token = {});

  // Nothing when the request may go on; else why not. The order matters: a request from a page of
  // another site is refused for its Host or Origin before its token is looked at.
  std::optional<Refusal> check(const httplib::Request& request) const;
  // True when the request carries the token in its URL (?token=): the page answers with the cookie.
  bool token_in_url(const httplib::Request& request) const;
  // The Set-Cookie value that carries the token from now on.
  std::string cookie() const;

  const std::string& token() const { return token_; }
  const std::string& csrf_token() const { return csrf_; }
  const std::set<std::string>& allowed_hosts() const { return hosts_; }

 private:
  bool host_allowed(const std::string& host) const;
  bool origin_allowed(const std::string& origin) const;
  bool has_token(const httplib::Request& request) const;

  std::string token_, csrf_;
  std::set<std::string> hosts_;  // "127.0.0.1:8585", "localhost:8585", ...
};

// A random hex string of `bytes` bytes from the kernel's generator.
std::string random_token(std::size_t bytes = 24);

}  // namespace bulkhead::web
