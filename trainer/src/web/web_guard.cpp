#include "web/web_guard.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <stdexcept>

namespace bulkhead::web {
namespace {

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

// Equal strings take the same time to compare whatever they hold: the token cannot be guessed byte by byte.
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char difference = 0;
  for (std::size_t i = 0; i < a.size(); ++i) difference |= static_cast<unsigned char>(a[i] ^ b[i]);
  return difference == 0;
}

bool is_wildcard(const std::string& host) { return host == "0.0.0.0" || host == "::" || host.empty(); }

// As a Host header writes an address: IPv6 in brackets.
std::string as_host(const std::string& address) {
  return address.find(':') != std::string::npos ? "[" + address + "]" : address;
}

// Every address of this machine's interfaces, and its name: what a browser elsewhere may call it.
std::set<std::string> own_names() {
  std::set<std::string> names;
  char hostname[256] = {};
  if (gethostname(hostname, sizeof hostname - 1) == 0) names.insert(lower(hostname));
  ifaddrs* interfaces = nullptr;
  if (getifaddrs(&interfaces) != 0) return names;
  for (const ifaddrs* i = interfaces; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    char text[INET6_ADDRSTRLEN] = {};
    const int family = i->ifa_addr->sa_family;
    const void* address = family == AF_INET ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr)
                        : family == AF_INET6 ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr)
                                             : nullptr;
    if (address && inet_ntop(family, address, text, sizeof text)) names.insert(as_host(text));
  }
  freeifaddrs(interfaces);
  return names;
}

// The value of one cookie in a Cookie header ("a=1; bulkhead_token=...").
std::string cookie_value(const std::string& header, const std::string& name) {
  std::size_t at = 0;
  while (at < header.size()) {
    const std::size_t end = std::min(header.find(';', at), header.size());
    std::string pair = header.substr(at, end - at);
    pair.erase(0, pair.find_first_not_of(' '));
    if (pair.rfind(name + "=", 0) == 0) return pair.substr(name.size() + 1);
    at = end + 1;
  }
  return "";
}

}  // namespace

std::string random_token(std::size_t bytes) {
  std::ifstream random("/dev/urandom", std::ios::binary);
  std::string raw(bytes, '\0');
  if (!random.read(raw.data(), static_cast<std::streamsize>(bytes))) throw std::runtime_error("cannot read /dev/urandom");
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : raw) hex += {digits[c >> 4], digits[c & 15]};
  return hex;
}

Guard::Guard(const std::string& bound_host, int port, std::string token)
    : token_(token.empty() ? random_token() : std::move(token)), csrf_(random_token()) {
  std::set<std::string> names = {"localhost", "127.0.0.1", "[::1]"};
  if (is_wildcard(bound_host)) names.merge(own_names());
  else names.insert(lower(as_host(bound_host)));
  for (const auto& name : names) {
    hosts_.insert(name + ":" + std::to_string(port));
    if (port == 80) hosts_.insert(name);  // a browser leaves the default port out
  }
}

bool Guard::host_allowed(const std::string& host) const { return hosts_.count(lower(host)) > 0; }

bool Guard::origin_allowed(const std::string& origin) const {
  const std::string scheme = "http://";
  return origin.rfind(scheme, 0) == 0 && host_allowed(origin.substr(scheme.size()));
}

bool Guard::has_token(const httplib::Request& request) const {
  const std::string bearer = "Bearer ";
  const std::string authorization = request.get_header_value("Authorization");
  if (authorization.rfind(bearer, 0) == 0 && same_secret(authorization.substr(bearer.size()), token_)) return true;
  if (same_secret(cookie_value(request.get_header_value("Cookie"), kCookie), token_)) return true;
  return token_in_url(request);
}

bool Guard::token_in_url(const httplib::Request& request) const {
  return request.has_param("token") && same_secret(request.get_param_value("token"), token_);
}

std::optional<Refusal> Guard::check(const httplib::Request& request) const {
  const std::string host = request.get_header_value("Host");
  if (!host_allowed(host))
    return Refusal{403, "Host \"" + host + "\" is not this server's name (a DNS rebinding attempt, or open the URL the "
                        "server printed)"};
  const bool changes = request.method != "GET" && request.method != "HEAD";
  if (changes && request.has_header("Origin") && !origin_allowed(request.get_header_value("Origin")))
    return Refusal{403, "Origin \"" + request.get_header_value("Origin") + "\" is not this server: cross-site requests are refused"};
  if (!has_token(request))
    return Refusal{401, "no token: open the URL the server printed (it ends in ?token=...), or send Authorization: Bearer TOKEN"};
  if (changes && !same_secret(request.get_header_value(kCsrfHeader), csrf_))
    return Refusal{403, std::string("no valid ") + kCsrfHeader + " header (GET /api/session gives it)"};
  return std::nullopt;
}

std::string Guard::cookie() const {
  return std::string(kCookie) + "=" + token_ + "; Path=/; HttpOnly; SameSite=Strict";
}

}  // namespace bulkhead::web
