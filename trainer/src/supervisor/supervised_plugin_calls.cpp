// supervised_plugin_calls.cpp — calls and their deadlines: a hook sent and waited for (invoke), sent
// without waiting (send), a request for `plugins check` (probe), each counted sent or skipped.
#include "supervisor/supervised_plugin_parts.hpp"

#include <algorithm>

namespace bulkhead {
using namespace supervised_parts;

namespace {

Json sent_shape(const Json& params, std::optional<int> slot) {
  Json sent = Json::object();
  if (slot) sent["lent_slot"] = *slot;
  if (params.is_object() && params.contains("image") && params["image"].is_object()) sent["image"] = image_shape(params["image"]);
  return sent;
}

}  // namespace

bool SupervisedPlugin::count_call(const std::string& hook, bool sent) {
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.count_call(hook, sent);
  return sent;
}

void SupervisedPlugin::count_failure(const std::string& hook, Reply::Status status) {
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.count_failure(hook, status);
}

std::optional<SupervisedPlugin::Exchange> SupervisedPlugin::exchange(const std::string& hook, Json params,
                                                                     std::chrono::milliseconds limit,
                                                                     std::chrono::milliseconds backoff_wait) {
  const auto began = Clock::now();
  auto generation = ready_generation(limit, backoff_wait);
  if (!count_call(hook, generation != nullptr)) return std::nullopt;
  const auto image_slot = takes_images(hook) ? place_images(*generation, params) : std::nullopt;
  // Time spent waiting for a restart comes out of the call's deadline.
  const auto left = limit - std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - began);
  return Exchange{generation->connection->call(hook, std::move(params), std::max(left, std::chrono::milliseconds(1))),
                  generation->number, image_slot};
}

std::optional<Json> SupervisedPlugin::conclude(const std::string& hook, Json sent, Exchange answer) {
  if (answer.image_slot) sent["image_slot"] = *answer.image_slot;
  auto result = conclude(hook, sent, std::move(answer.reply), answer.generation);
  if (answer.image_slot) images_->give_back(*answer.image_slot);
  return result;
}

std::optional<Json> SupervisedPlugin::invoke(const std::string& hook, Json params) {
  const auto slot = lent_slot(params);
  const Json sent = sent_shape(params, slot);
  auto answer = exchange(hook, std::move(params), deadline(hook), deadline(hook));
  std::optional<Json> result;
  if (answer) result = conclude(hook, sent, std::move(*answer));
  release_slot(slot);
  return result;
}

void SupervisedPlugin::send(const std::string& hook, const Json& params, std::function<void(const Json&)> on_result) {
  auto generation = ready_generation(std::chrono::milliseconds(0));  // a notify hook never waits
  const auto slot = lent_slot(params);
  if (!count_call(hook, generation != nullptr)) return release_slot(slot);
  const int number = generation->number;
  generation->connection->request(hook, params, deadline(hook), [this, hook, number, slot, on_result](Reply reply) {
    auto result = conclude(hook, sent_shape(Json(), slot), std::move(reply), number);
    release_slot(slot);
    if (result && on_result) on_result(*result);
  });
}

void SupervisedPlugin::release_slot(std::optional<int> slot) {
  if (slot && gate_ && gate_->region()) gate_->region()->give_back(*slot);
}

Reply SupervisedPlugin::probe(const std::string& method, const Json& params) {
  std::shared_ptr<Generation> generation;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (current_ && !current_->dead) generation = current_;
  }
  if (!generation) return Reply{Reply::Status::disconnected, nullptr, "the plugin is not running", 0, ""};
  return generation->connection->call(method, params, deadline(method));
}

}  // namespace bulkhead
