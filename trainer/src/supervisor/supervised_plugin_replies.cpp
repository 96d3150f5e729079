// supervised_plugin_replies.cpp — what a reply is judged by: its hook's result schema, finite numbers,
// captions, images, state size, model updates (through the model gate); and a failed reply in words.
#include "supervisor/supervised_plugin_parts.hpp"

#include <algorithm>
#include <cmath>

#include <bulkhead/wire.hpp>

namespace bulkhead {
using namespace supervised_parts;

namespace {

// Hooks whose reply may be nil (most observers answer so): such a reply needs no schema walk.
bool nil_is_a_valid_reply(const std::string& hook) {
  static const std::set<std::string> hooks = [] {
    std::set<std::string> nil_ok;
    for (const auto& [name, spec] : Schemas::instance().hook_catalogue()["hooks"].items())
      if (Schemas::instance().validate("hooks.json#/hooks/" + name + "/result", nullptr).empty()) nil_ok.insert(name);
    return nil_ok;
  }();
  return hooks.count(hook) > 0;
}

bool all_finite(const Json& value) {
  if (value.is_number_float()) return std::isfinite(value.get<double>());
  if (value.is_structured())
    return std::all_of(value.begin(), value.end(), [](const Json& item) { return all_finite(item); });
  return true;
}

bool valid_utf8(const std::string& text) {
  try {
    (void)Json(text).dump();
    return true;
  } catch (const Json::type_error&) {
    return false;
  }
}

}  // namespace

std::string SupervisedPlugin::check_reply(const std::string& hook, const Json& params, const Json& result) {
  // (The model gate judges a model hook's reply, nil included.)
  if (result.is_null() && !gate_ && nil_is_a_valid_reply(hook)) return "";
  // A state is the plugin's own business (an average not yet begun may well be NaN); only its size is ours.
  if (hook != "get_state" && !all_finite(result)) return "the reply holds NaN or infinity";
  auto errors = Schemas::instance().validate("hooks.json#/hooks/" + hook + "/result", result);
  if (!errors.empty()) return "the reply breaks schemas/hooks.json (" + hook + " result): " + join_errors(errors);
  if (hook == "transform_caption") {
    const auto& caption = result["caption"].get_ref<const std::string&>();
    if (!valid_utf8(caption)) return "the caption is not valid UTF-8";
    if (caption.size() > std::size_t(settings_.limits.max_caption_bytes))
      return "the caption has " + std::to_string(caption.size()) + " bytes, over the limit of " +
             std::to_string(settings_.limits.max_caption_bytes);
  }
  if (hook == "get_state") {
    const std::size_t bytes = Json::to_msgpack(result["state"]).size();
    if (bytes > std::size_t(settings_.limits.max_state_mb) << 20)
      return "the state has " + std::to_string(bytes) + " bytes encoded, over limits.max_state_mb of " +
             std::to_string(settings_.limits.max_state_mb) + " MB";
  }
  if (hook == "transform_pil_image") {
    try {
      const Image out = wire::image_header(result["image"]);
      if (!manifest_.resizes_images && params.contains("image")) {
        const auto& in = params["image"];
        if (out.width != in["width"].get<int>() || out.height != in["height"].get<int>() || out.mode != in["mode"])
          return "the image came back " + out.mode + " " + std::to_string(out.width) + "x" + std::to_string(out.height) +
                 ", not " + in["mode"].get<std::string>() + " " + std::to_string(in["width"].get<int>()) + "x" +
                 std::to_string(in["height"].get<int>()) + " (the manifest does not declare resizes_images)";
      }
    } catch (const wire::DecodeError& e) {
      return std::string("the image is malformed: ") + e.what();
    }
  }
  if (hook == "on_model_load" && gate_) return gate_->check_load_reply(result);
  // Last, so that a reply queues its model updates only when nothing else is wrong with it.
  if (result.is_object() && result.contains("updates")) {
    if (!gate_) return "the reply carries model updates, but the plugin's manifest asks for no model_access";
    return gate_->admit(result["updates"], lent_slot(params));
  }
  return "";
}

std::optional<Json> SupervisedPlugin::conclude(const std::string& hook, const Json& params, Reply reply, int generation) {
  if (reply.lost) {  // the crash is the request's the host died serving, counted and faulted there
    std::lock_guard<std::mutex> lock(mutex_);
    counters_.count_lost(hook);
    return std::nullopt;
  }
  if (reply.status != Reply::Status::ok) {
    count_failure(hook, reply.status);
    const bool restart = reply.status == Reply::Status::timeout || reply.status == Reply::Status::disconnected;
    fault(hook, describe_failure(hook, reply), generation, restart);
    return std::nullopt;
  }
  std::string invalid = take_images(hook, params, reply.result);
  if (invalid.empty()) invalid = check_reply(hook, params, reply.result);
  if (!invalid.empty()) {
    count_failure(hook, Reply::Status::invalid);
    fault(hook, invalid, generation, false);
    return std::nullopt;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    counters_.count_ok(hook, reply.latency_ms);
  }
  if (reply.result.is_object() && reply.result.contains("control")) handle_control(reply.result["control"]);
  return std::move(reply.result);
}

std::string SupervisedPlugin::describe_failure(const std::string& hook, const Reply& reply) const {
  static const char* what[] = {"ok", "failed", "missed its deadline of", "sent an invalid reply", "crashed"};
  std::string description = what[int(reply.status)];
  if (reply.status == Reply::Status::timeout) description += " " + std::to_string(deadline(hook).count()) + " ms";
  if (!reply.detail.empty()) description += ": " + reply.detail;
  return description;
}

}  // namespace bulkhead
