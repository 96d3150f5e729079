#include "supervisor/handshake.hpp"

#include <algorithm>

#include <bulkhead/wire.hpp>

#include "common/schemas.hpp"

namespace bulkhead {
namespace {

[[noreturn]] void refuse(Connection& connection, const std::string& code, const std::string& message,
                         const std::string& why) {
  connection.answer_hello({{"code", code}, {"message", message}}, nullptr);
  throw HelloRefused(why);
}

Welcomed split_hooks(const Json& listed) {
  Welcomed hooks;
  const auto& catalogue = Schemas::instance().hook_catalogue()["hooks"];
  for (const auto& hook : listed) {
    if (catalogue.contains(hook.get<std::string>()))
      hooks.known.push_back(hook);
    else
      hooks.unknown.push_back(hook);
  }
  return hooks;
}

std::vector<int> spoken(const Json& hello) {
  if (hello.contains("protocols")) return hello["protocols"].get<std::vector<int>>();
  return {hello["protocol"].get<int>()};
}

// "1", "1-2", "1, 3": a list of versions for a message.
std::string versions(std::vector<int> list) {
  std::sort(list.begin(), list.end());
  if (list.size() > 1 && list.back() - list.front() + 1 == static_cast<int>(list.size()))
    return std::to_string(list.front()) + "-" + std::to_string(list.back());
  std::string text;
  for (int v : list) text += (text.empty() ? "" : ", ") + std::to_string(v);
  return text;
}

std::vector<int> served(bool plain) {
  if (!plain) return {1};
  std::vector<int> list;
  for (int v = wire::kOldestProtocolVersion; v <= wire::kProtocolVersion; ++v) list.push_back(v);
  return list;
}

}  // namespace

std::optional<int> negotiate(const Json& hello, bool plain) {
  std::optional<int> chosen;
  const std::vector<int> ours = served(plain);
  for (int v : spoken(hello))
    if (std::find(ours.begin(), ours.end(), v) != ours.end() && (!chosen || v > *chosen)) chosen = v;
  return chosen;
}

Welcomed welcome(Connection& connection, const Json& hello, const std::string& token, bool plain, Json fields) {
  auto errors = Schemas::instance().validate("protocol/hello.schema.json", hello);
  if (!errors.empty())
    refuse(connection, "bad_params", join_errors(errors), "its hello breaks protocol/hello.schema.json: " + join_errors(errors));
  const std::optional<int> protocol = negotiate(hello, plain);
  if (!protocol) {
    std::string why = "protocol version mismatch: the trainer speaks protocol " + versions(served(true)) +
                      ", the plugin speaks protocol " + versions(spoken(hello));
    if (!plain)
      why += "; it connected without PLAIN credentials, and without them only protocol 1 is served (docs/protocol.md, section 2)";
    why += " (docs/protocol.md, Versions)";
    refuse(connection, "protocol_mismatch", why, why);
  }
  if (hello["token"] != token) refuse(connection, "bad_token", "the token does not match", "its hello carried a wrong token");
  fields["protocol"] = *protocol;
  connection.answer_hello(nullptr, fields);
  Welcomed welcomed = split_hooks(hello["hooks"]);
  welcomed.protocol = *protocol;
  return welcomed;
}

}  // namespace bulkhead
