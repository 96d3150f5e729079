// trainer_ranks.cpp — data parallel (docs/training.md): every rank starts from rank 0's model,
// gradients summed on rank 0 and its weights handed back, transforms only on the other ranks, and the
// step boundary, where every rank acts alike on what rank 0 decided and any rank saw.
#include "train/trainer_parts.hpp"

#include <csignal>
#include <cstdint>

#include "supervisor/plugin_runner.hpp"

namespace bulkhead {
using namespace trainer_parts;

namespace {

// A data-parallel step's gradients and weights travel as one flat tensor: one collective, not one per parameter.
torch::Tensor flatten(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> rows;
  for (const auto& tensor : tensors) rows.push_back(tensor.reshape(-1));
  return torch::cat(rows);
}

void unflatten(const torch::Tensor& flat, std::vector<torch::Tensor>& tensors) {
  std::int64_t at = 0;
  for (auto& tensor : tensors) {
    tensor.copy_(flat.narrow(0, at, tensor.numel()).view_as(tensor));
    at += tensor.numel();
  }
}

std::string to_bytes(const Json& value) {
  const auto packed = Json::to_msgpack(value);
  return {packed.begin(), packed.end()};
}

}  // namespace

// Every rank starts from rank 0's model: its vocabulary (plugins may have added tokens), the shapes
// and frozen parameters on_model_load left, its weights; and from where it stands and its noise
// generator, so that every rank draws the noise of the whole batch and uses its rows of it.
void Trainer::share_leaders_model() {
  Json leaders;
  if (leader()) {
    Json parameters = Json::array();
    for (const auto& parameter : model_->parameters())
      parameters.push_back({{"shape", parameter.sizes().vec()}, {"trains", parameter.requires_grad()}});
    const auto rng_state = rng_.get_state();
    const auto* bytes = rng_state.data_ptr<std::uint8_t>();
    leaders = {{"vocabulary", vocab_.to_json()},
               {"position", position_to_json(position_)},
               {"parameters", parameters},
               {"rng", Json::binary(std::vector<std::uint8_t>(bytes, bytes + rng_state.numel()))}};
  }
  const std::string shared = ranks_->broadcast_bytes(leader() ? to_bytes(leaders) : std::string());
  auto parameters = model_->parameters();
  if (!leader()) {
    leaders = Json::from_msgpack(shared);
    if (leaders.at("parameters").size() != parameters.size())
      throw ConfigError("rank " + std::to_string(ranks_->rank()) + "'s model has " + std::to_string(parameters.size()) +
                        " parameters and rank 0's " + std::to_string(leaders.at("parameters").size()) +
                        ": every machine must train with the same \"model\" settings (give each the same train.json)");
    vocab_ = Vocabulary::from_json(leaders.at("vocabulary"));
    position_ = position_from_json(leaders.at("position"));
    const auto& state = leaders.at("rng").get_binary();
    rng_.set_state(torch::tensor(std::vector<std::uint8_t>(state.begin(), state.end()), torch::kUInt8));
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < parameters.size(); ++i) {
      const auto& described = leaders.at("parameters").at(i);
      const auto shape = described.at("shape").get<std::vector<std::int64_t>>();
      if (parameters[i].sizes().vec() != shape) parameters[i].set_data(torch::empty(shape, parameters[i].options()));
      parameters[i].set_requires_grad(described.at("trains").get<bool>());
    }
  }
  torch::NoGradGuard no_grad;
  auto weights = flatten(parameters);
  ranks_->broadcast(weights);
  unflatten(weights, parameters);
}

// One bucket: every trained parameter's gradient, summed on rank 0.
void Trainer::reduce_gradients() {
  std::vector<torch::Tensor> trained, gradients;
  for (auto& parameter : model_->parameters()) {
    if (!parameter.requires_grad()) continue;
    trained.push_back(parameter);
    gradients.push_back(parameter.grad().defined() ? parameter.grad() : torch::zeros_like(parameter));
  }
  auto summed = flatten(gradients);
  ranks_->reduce_to_leader(summed);
  if (leader()) {
    for (std::size_t i = 0; i < trained.size(); ++i) trained[i].mutable_grad() = gradients[i];
    unflatten(summed, gradients);
  }
}

// Rank 0's weights, whatever model access did to them, on every rank: the ranks never drift apart.
void Trainer::take_leaders_weights() {
  torch::NoGradGuard no_grad;
  auto parameters = model_->parameters();
  auto weights = flatten(parameters);
  ranks_->broadcast(weights);
  if (leader()) return;
  unflatten(weights, parameters);
  for (auto& parameter : parameters) parameter.mutable_grad() = torch::Tensor();
}

// Observer hooks, model access and control are rank 0's: a plugin runs on the other ranks only
// for its transforms of their samples.
void Trainer::keep_only_transforms_here() {
  for (const auto& name : plugins_->names())
    if (!transforms_samples(name)) plugins_->switch_off(name, "its hooks run on rank 0 only (it transforms no samples)");
}

bool Trainer::transforms_samples(const std::string& plugin) const {
  for (const char* hook : {"transform_caption", "transform_pil_image", "transform_captions", "transform_pil_images"})
    if (plugins_->implements(plugin, hook)) return true;
  return false;
}

void Trainer::step_boundary() {
  handle_control_requests();
  if (!ranks_) return check_abort();
  // One collective in the usual step: whether any rank saw a stop signal or an abort, and the
  // size of what rank 0 decided; then, when it decided something, that.
  const auto abort = plugins_->abort_reason();
  const std::string decided = leader() && !decision_.empty() ? to_bytes(std::exchange(decision_, Json::object())) : "";
  auto seen = torch::tensor({std::int64_t(interrupted() ? 1 : 0), std::int64_t(abort ? 1 : 0), std::int64_t(decided.size())},
                            torch::kInt64);
  ranks_->allreduce_sum(seen);
  if (seen[2].item<std::int64_t>() > 0) {
    const std::string decision = ranks_->broadcast_bytes(decided);
    if (!leader()) apply_decision(Json::from_msgpack(decision));
  }
  if (seen[0].item<std::int64_t>() > 0 && agreed_signal_ == 0) agreed_signal_ = interrupted() ? requested_interrupt() : SIGTERM;
  if (seen[1].item<std::int64_t>() > 0)
    throw TrainingAborted("plugin failure: " + abort.value_or("a plugin with on_failure \"abort\" failed on another rank "
                                                             "(its train.log names it: rank 0's, or ranks/rank-N/train.log)"));
}

void Trainer::apply_decision(const Json& decision) {
  if (decision.contains("stop")) stop_requested_ = true;
  if (decision.contains("next_grad_accum")) position_.next_grad_accum = decision["next_grad_accum"];
  for (const auto& name : decision.value("switch_off", Json::array())) plugins_->switch_off(name, "stopped on rank 0");
  for (const auto& reload : decision.value("reload", Json::array())) {
    const std::string name = reload.at("plugin");
    if (transforms_samples(name)) plugins_->reload(name, reload.at("keep_state"), position_.global_step);
  }
}

}  // namespace bulkhead
