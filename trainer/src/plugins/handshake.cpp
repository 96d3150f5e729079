#include "plugins/handshake.hpp"

#include <bulkhead/wire.hpp>

#include "common/schemas.hpp"

namespace bulkhead {
namespace {

[[noreturn]] void refuse(Connection& connection, const std::string& code, const std::string& message,
                         const std::string& why) {
  connection.answer_hello({{"code", code}, {"message", message}}, nullptr);
  throw HelloRefused(why);
}

HelloHooks split_hooks(const Json& listed) {
  HelloHooks hooks;
  const auto& catalogue = Schemas::instance().hook_catalogue()["hooks"];
  for (const auto& hook : listed) {
    if (catalogue.contains(hook.get<std::string>()))
      hooks.known.push_back(hook);
    else
      hooks.unknown.push_back(hook);
  }
  return hooks;
}

}  // namespace

HelloHooks welcome(Connection& connection, const Json& hello, const std::string& token, const Json& options,
                   const std::string& scratch_dir) {
  auto errors = Schemas::instance().validate("protocol/hello.schema.json", hello);
  if (!errors.empty())
    refuse(connection, "bad_params", join_errors(errors), "its hello breaks protocol/hello.schema.json: " + join_errors(errors));
  const int protocol = hello["protocol"].get<int>();
  if (protocol != wire::kProtocolVersion) {
    const std::string why = "protocol version mismatch: the trainer speaks protocol " +
                            std::to_string(wire::kProtocolVersion) + ", the plugin speaks protocol " + std::to_string(protocol);
    refuse(connection, "protocol_mismatch", why, why);
  }
  if (hello["token"] != token) refuse(connection, "bad_token", "the token does not match", "its hello carried a wrong token");
  connection.answer_hello(nullptr, {{"protocol", wire::kProtocolVersion}, {"options", options}, {"scratch_dir", scratch_dir}});
  return split_hooks(hello["hooks"]);
}

}  // namespace bulkhead
