#include "train/trainer.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <sstream>
#include <thread>

#include <fmt/ranges.h>

#include "common/log.hpp"
#include "common/schemas.hpp"
#include "supervisor/plugin_runner.hpp"
#include "common/atomic_file.hpp"
#include "train/loss_plot.hpp"
#include "train/model_access.hpp"
#include "train/sampling.hpp"
#include "train/tensorboard.hpp"

namespace bulkhead {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

constexpr double kPacedLoss = 1.0;  // the loss a paced (benchmark-mode) step reports
// Who asked, in the log and in a requested checkpoint's record: never a plugin's name (it has a
// space), so no plugin may delete the checkpoints the user asked for.
const std::string kUserSource = "the user";
constexpr std::chrono::seconds kLiveReportEvery{2};  // how often plugin-report.live.json is rewritten

std::atomic<int> g_interrupt{0};  // the signal that asked to stop, 0 for none
static_assert(std::atomic<int>::is_always_lock_free, "request_interrupt must be async-signal-safe");

bool interrupted() { return g_interrupt.load() != 0; }

std::string signal_name(int signal) {
  const char* abbreviation = sigabbrev_np(signal);
  return abbreviation ? std::string("SIG") + abbreviation : "signal " + std::to_string(signal);
}

// File sinks buffer; train.log must be complete when run() returns or throws.
void flush_logs() {
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& log) { log->flush(); });
}

// A data-parallel rank takes the GPU of its local rank: one rank per GPU.
torch::Device pick_device(const std::string& wanted, const std::optional<RankSettings>& rank) {
  if (wanted == "cuda" && !torch::cuda::is_available())
    throw ConfigError("device \"cuda\" was asked for, but LibTorch sees no CUDA device");
  if (wanted == "cuda" || (wanted == "auto" && torch::cuda::is_available()))
    return {torch::kCUDA, static_cast<c10::DeviceIndex>(rank ? rank->local_rank % torch::cuda::device_count() : 0)};
  return torch::kCPU;
}

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

std::vector<std::string> default_prompts(const TrainConfig& config, const Dataset& validation, const Dataset& train) {
  if (!config.sample_prompts.empty()) return config.sample_prompts;
  if (config.builtin_data())
    return {"a red circle on a white background, center",      "a blue square on a black background, top left",
            "a green triangle on a gray background, bottom right", "a yellow diamond on a black background, top right",
            "a purple cross on a white background, bottom left",  "an orange circle on a gray background, top left"};
  std::vector<std::string> prompts;
  const Dataset& source = validation.examples.empty() ? train : validation;
  for (std::size_t i = 0; i < source.examples.size() && prompts.size() < 6; ++i)
    prompts.push_back(source.examples[i].caption);
  return prompts;
}

}  // namespace

// A resumed run takes back its own folder; anything else needs a new or empty one (or overwrite).
RunFolder claim_run_folder(const TrainConfig& config, const std::optional<fs::path>& resume, bool overwrite) {
  if (config.run_dir.empty()) return RunFolder::claim_new(config.logdir, config.project_name);
  const fs::path wanted = config.run_dir;
  std::error_code error;
  const bool own_folder = resume && fs::equivalent(resume->parent_path().parent_path(), wanted, error);
  return RunFolder::claim(wanted, own_folder ? RunFolder::Mode::resume
                                  : overwrite ? RunFolder::Mode::overwrite
                                              : RunFolder::Mode::fresh);
}

namespace {

// "step-000300", "epoch-0010": names that sort in training order.
std::string step_name(const char* kind, std::int64_t number, int digits = 6) {
  char name[48];
  std::snprintf(name, sizeof name, "%s-%0*lld", kind, digits, static_cast<long long>(number));
  return name;
}

}  // namespace

// Benchmark mode (bench_pace_ms): the model's compute, forward, backward and optimizer step (or a
// validation batch's forward), is replaced by a wait of bench_pace_ms.
void Trainer::pace() const {
  std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(config_.bench_pace_ms));
}

void request_interrupt(int signal) { g_interrupt.store(signal); }
void clear_interrupt() { g_interrupt.store(0); }
int requested_interrupt() { return g_interrupt.load(); }

// ---------------------------------------------------------------------------
// Setup: device, threads, data, run folder, model and optimizer, plugins.
// ---------------------------------------------------------------------------

Trainer::Trainer(TrainConfig config, std::optional<fs::path> resume, bool overwrite, std::optional<RankSettings> rank)
    : config_(std::move(config)), rank_(std::move(rank)), log_(logger("trainer")) {
  device_ = pick_device(config_.device, rank_);
  amp_ = config_.amp && device_.is_cuda();
  // A fixed thread count makes CPU runs bit-identical: reductions split work by thread. The ranks
  // on one machine share its cores.
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(config_.num_threads > 0 ? config_.num_threads
                                                 : std::max(1, cores / (rank_ ? rank_->local_world_size : 1)));
  // Tiny gradients decay into denormal floats, which the CPU handles up to 10x slower.
  at::globalContext().setFlushDenormal(true);
  torch::manual_seed(config_.seed);  // weight initialisation
  rng_ = at::make_generator<at::CPUGeneratorImpl>(config_.seed);

  data_root_ = config_.builtin_data() ? config_.data_root
                                     : config_.from_config(config_.data_root).lexically_normal().string();
  create_run_folder(resume, overwrite);  // first, so that train.log also records data problems
  if (rank_) {
    ranks_ = RankGroup::join(*rank_, device_.is_cuda());
    if (!leader()) resume.reset();  // rank 0 reads the checkpoint and hands its model to the others
  }

  const DataOptions data_options{config_.resolution, config_.num_workers, config_.max_image_pixels, config_.seed};
  std::tie(train_, validation_) =
      split_validation(load_dataset(data_root_, data_options), config_.validation_split, config_.seed);
  epoch_length_ = batches_per_epoch(train_.examples.size(), config_.batch_size);
  summary_.skipped_images = train_.skipped.size();
  std::optional<Checkpoint> checkpoint;
  build_model(resume, checkpoint);

  RunInfo run;
  run.project_name = config_.project_name;
  run.run_dir = run_dir_;
  run.config_dir = config_.source_dir;
  if (!config_.python.empty()) run.python = config_.from_config(config_.python);
  run.jail = JailSettings::from_json(config_.json.at("jail"));
  if (ranks_) {
    run.rank = ranks_->rank();
    run.world_size = ranks_->world_size();
    run.rank_seed = config_.seed * 1000003 + static_cast<std::uint64_t>(run.rank);
  }
  plugins_ = std::make_unique<PluginRunner>(config_.plugins, run, resumed_plugin_states_);
  model_access_ = std::make_unique<ModelAccess>(model_, vocab_, *plugins_);
  if (leader()) {
    model_access_->load(resume.has_value(), position_.global_step);
    build_optimizer(checkpoint);
  } else {
    keep_only_transforms_here();
  }
  if (ranks_) share_leaders_model();
  if (resume) log_->info("resumed from {} at epoch {}, step {}", resume->string(), position_.epoch + 1, position_.global_step);
  log_->info("device {}{}, {} torch threads, {} training / {} validation images, {} steps per epoch, plugins: {}",
             device_.str(), amp_ ? " (bfloat16 autocast)" : "", torch::get_num_threads(), train_.examples.size(),
             validation_.examples.size(), epoch_length_, plugins_->empty() ? "none" : std::to_string(plugins_->names().size()));
  if (ranks_ && leader()) {
    std::vector<std::int64_t> split;
    for (int r = 0; r < ranks_->world_size(); ++r) split.push_back(shard_of(config_.batch_size, r, ranks_->world_size()).count);
    log_->info("data parallel: {} ranks on {}, each batch of {} split {} (ranks/ has the other ranks' logs)",
               ranks_->world_size(), ranks_->backend(), config_.batch_size, fmt::join(split, " + "));
  }
  if (paced())
    log_->warn("benchmark mode (bench_pace_ms {}): no model compute, each step waits {} ms instead; losses are a "
               "placeholder {} and no samples are drawn", config_.bench_pace_ms, config_.bench_pace_ms, kPacedLoss);
  for (auto& [key, why] : config_.everydream2_unused)
    log_->warn("EveryDream2's \"{}\" is not used by Bulkhead: {}", key, why);
}

// A later run in this process (a study's next trial, a test) writes its own train.log, not this one.
Trainer::~Trainer() {
  if (!run_dir_.empty()) stop_log_to_file((run_dir_ / "train.log").string());
}

void Trainer::watch_plugins() { plugins_->watch_plugin_files(); }

void Trainer::create_run_folder(const std::optional<fs::path>& resume, bool overwrite) {
  if (!rank_) folder_.emplace(claim_run_folder(config_, resume, overwrite));
  else folder_.emplace(RunFolder::held_by_parent(config_.run_dir));  // the launcher claimed it
  if (rank_ && rank_->rank != 0) return create_rank_folder();
  run_dir_ = folder_->path();
  fs::create_directories(run_dir_ / "checkpoints");
  fs::create_directories(run_dir_ / "samples");
  log_to_file((run_dir_ / "train.log").string());
  // config.json stands alone: where the data and the run really are.
  config_.json["run_dir"] = run_dir_.string();
  config_.json["data_root"] = data_root_;
  write_file_atomically(run_dir_ / "config.json", config_.json.dump(2) + "\n");
  metrics_.open(run_dir_ / "metrics.jsonl", std::ios::app);
  events_ = std::make_unique<EventWriter>(run_dir_ / "tensorboard");
  summary_.run_dir = run_dir_;
  log_->info("run folder {}", run_dir_.string());
  for (auto& stale : folder_->remove_stale_temporaries())
    log_->warn("removed {}, a temporary file left by an earlier crash", stale.string());
}

void Trainer::create_rank_folder() {
  run_dir_ = folder_->path() / "ranks" / ("rank-" + std::to_string(rank_->rank));
  fs::create_directories(run_dir_);
  log_to_file((run_dir_ / "train.log").string());
  summary_.run_dir = folder_->path();
  log_->info("rank {} of {}: training on its share of each batch; rank 0 writes the run folder {}", rank_->rank,
             rank_->world_size, folder_->path().string());
}

void Trainer::build_model(const std::optional<fs::path>& resume, std::optional<Checkpoint>& checkpoint) {
  if (resume) {
    checkpoint.emplace(*resume, device_);
    resumed_plugin_states_ = checkpoint->info().plugin_states;
    for (const auto& saved : checkpoint->info().requested_checkpoints)
      requested_checkpoints_.push_back({saved.at("path").get<std::string>(), saved.at("plugin"), saved.at("tag")});
    vocab_ = checkpoint->info().vocab;  // the model only understands the ids it was trained with
    position_ = checkpoint->info().position;
    model_ = checkpoint->make_model();
  } else {
    std::vector<std::string> captions;
    for (auto& example : train_.examples) captions.push_back(example.caption);
    vocab_ = Vocabulary::build(captions);
    position_.grad_accum = position_.next_grad_accum = config_.grad_accum;
    model_ = FlowModel(model_options(config_.json, static_cast<std::int64_t>(vocab_.size())));
    model_->to(device_);
  }
  std::int64_t parameters = 0;
  for (auto& p : model_->parameters()) parameters += p.numel();
  logger("model")->info("flow-matching UNet, {} parameters, vocabulary of {} words", parameters, vocab_.size() - 3);
}

void Trainer::build_optimizer(std::optional<Checkpoint>& checkpoint) {
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      model_->parameters(), torch::optim::AdamWOptions(config_.lr).weight_decay(config_.weight_decay));
  if (!checkpoint) return;
  checkpoint->load_optimizer(*optimizer_);
  checkpoint->load_rng(rng_);
  if (model_access_->added_rows() > 0) {
    // The embedding grew past the saved moments' shape: its moments start afresh.
    const auto parameters = model_->named_parameters();
    optimizer_->state().erase(c10::guts::to_string(parameters[FlowModelImpl::kWordEmbedding].unsafeGetTensorImpl()));
  }
  checkpoint.reset();
}

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

// ---------------------------------------------------------------------------
// The run: epochs until max_epochs, a stop request or Ctrl-C.
// ---------------------------------------------------------------------------

RunSummary Trainer::run() {
  progress_ = std::make_unique<Progress>(position_.global_step, config_.log_every_n_steps);
  try {
    Json start = run_kwargs();
    start["max_epochs"] = config_.max_epochs;
    start["epoch_length"] = epoch_length_;
    call("on_training_start", start);

    while (position_.epoch < config_.max_epochs && !stop_requested_ && !interrupt_requested()) run_epoch();

    progress_->clear();
    if (interrupt_requested()) {
      // Like EveryDream2: save and leave at once, without on_training_end.
      summary_.signal = interrupt_signal();
      log_->warn("interrupted by {}: saving a checkpoint and stopping the plugins", signal_name(summary_.signal));
      save("interrupted");
      summary_.outcome = RunOutcome::interrupted;
    } else {
      call("on_training_end", {{"project_name", config_.project_name},
                               {"log_folder", run_dir_.string()},
                               {"global_step", position_.global_step}});
      write_samples("final");
      save("final");
      summary_.outcome = stop_requested_ ? RunOutcome::stopped : RunOutcome::completed;
    }
  } catch (const RankLost& e) {
    // What this rank holds may be a step ahead of another's: the launcher restarts every rank from
    // the last checkpoint, and this one saves nothing.
    progress_->clear();
    log_->error("{}", e.what());
    next_epoch_loader_.reset();
    finish_plugins();
    flush_logs();
    throw;
  } catch (const std::exception& e) {
    progress_->clear();
    log_->error("training failed: {}; saving an errored checkpoint", e.what());
    try {
      save("errored");
    } catch (const std::exception& inner) {
      log_->error("could not save the errored checkpoint: {}", inner.what());
    }
    next_epoch_loader_.reset();
    finish_plugins();
    flush_logs();
    throw;
  }
  next_epoch_loader_.reset();  // a stop left it unused; its workers call the plugins
  finish_plugins();
  summary_.global_step = position_.global_step;
  summary_.epochs_done = position_.epoch;
  summary_.samples_per_s = train_seconds_ > 0 ? samples_seen_ / train_seconds_ : 0;
  if (summary_.skipped_images)
    log_->warn("{} corrupt image(s) were skipped (see the warnings above)", summary_.skipped_images);
  if (!leader()) {
    log_->info("rank {} done after {} steps", ranks_->rank(), position_.global_step);
    flush_logs();
    return summary_;
  }
  log_->info("done after {} steps ({:.1f} samples/s); checkpoint {}", position_.global_step, summary_.samples_per_s,
             summary_.last_checkpoint.string());
  if (model_access_->active() && train_seconds_ > 0)
    log_->info("model access took {:.1f} ms of {:.1f} s of training steps ({:.2f} %)", model_access_->step_seconds() * 1000,
               train_seconds_, 100 * model_access_->step_seconds() / train_seconds_);
  if (!summary_.last_samples.empty()) log_->info("samples in {}", (run_dir_ / "samples").string());
  log_->info("curves in {} (tensorboard --logdir {}) and {}", (run_dir_ / "tensorboard").string(), run_dir_.string(),
             (run_dir_ / "loss.png").string());
  flush_logs();
  return summary_;
}

void Trainer::run_epoch() {
  const auto epoch_started = std::chrono::steady_clock::now();
  const int epoch = position_.epoch;
  if (position_.batches_done == 0) position_.grad_accum = position_.next_grad_accum;  // set_arg takes effect here
  Json kwargs = run_kwargs();
  kwargs["epoch"] = epoch;
  kwargs["global_step"] = position_.global_step;
  kwargs["epoch_length"] = epoch_length_;
  call("on_epoch_start", kwargs);

  const auto loader = loader_for(epoch, position_.batches_done);
  for (int local_step = position_.batches_done; auto batch = loader->next(); ++local_step) {
    train_step(*batch, local_step, epoch_length_);
    const bool at_optimizer_step = position_.batches_done % position_.grad_accum == 0 ||
                                   position_.batches_done == epoch_length_;
    if (config_.sample_steps > 0 && position_.global_step % config_.sample_steps == 0)
      write_samples(step_name("step", position_.global_step));
    if (!at_optimizer_step) continue;
    for (auto& [source, tag] : std::exchange(checkpoint_requests_, {}))
      requested_checkpoints_.push_back({save("requested", tag), source, tag});
    if (checkpoint_time_due()) save("time");
    if ((stop_requested_ || interrupt_requested()) && position_.batches_done < epoch_length_) return;
  }
  position_.epoch = epoch + 1;
  position_.batches_done = 0;
  start_next_epoch_loader(epoch + 1);

  validate(epoch);
  if (leader()) write_loss_plot(run_dir_ / "metrics.jsonl", run_dir_ / "loss.png");
  kwargs.erase("epoch_length");  // EveryDream2 passes no epoch_length here
  kwargs["global_step"] = position_.global_step;
  call("on_epoch_end", kwargs);
  if (config_.plugin_state_each_epoch) plugins_->snapshot_states(position_.global_step, "epoch", true);
  // The epoch's wall time, hooks and loader waits included (bench/overhead.py compares it with and
  // without plugins); the samples and checkpoints written after it are not part of it.
  log_metrics({{"step", position_.global_step},
               {"epoch", epoch},
               {"epoch_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_started).count()}});

  const int done = epoch + 1;
  const bool last = done == config_.max_epochs;
  if (!last && config_.sample_every_n_epochs > 0 && done % config_.sample_every_n_epochs == 0)
    write_samples(step_name("epoch", done, 4));
  if (!last && config_.save_every_n_epochs > 0 && done % config_.save_every_n_epochs == 0) save("epoch");
  for (auto& [source, tag] : std::exchange(checkpoint_requests_, {}))
    requested_checkpoints_.push_back({save("requested", tag), source, tag});
}

std::unique_ptr<EpochLoader> Trainer::loader_for(int epoch, int first_batch) {
  if (next_epoch_loader_ && next_epoch_loader_epoch_ == epoch && first_batch == 0) return std::move(next_epoch_loader_);
  next_epoch_loader_.reset();
  LoaderOptions options;
  options.batch_size = config_.batch_size;
  options.workers = config_.num_workers;
  options.max_tokens = config_.max_tokens;
  options.cond_dropout = config_.cond_dropout;
  options.seed = config_.seed;
  options.first_batch = first_batch;
  options.prefetch_batches = config_.prefetch_batches;
  options.batch_transforms = config_.batch_transforms;
  if (ranks_) {
    options.rank = ranks_->rank();
    options.world_size = ranks_->world_size();
  }
  return std::make_unique<EpochLoader>(train_, vocab_, plugins_->empty() ? nullptr : plugins_.get(), options, epoch);
}

// An epoch's order and noise come from the seed and the epoch's number alone, so its batches are
// the same whenever they are made. What could tell is a plugin that transforms samples and also
// sees the epoch end (or keeps a state that a checkpoint of this epoch would hold): then the next
// epoch's samples wait for the next epoch, as in EveryDream2.
void Trainer::start_next_epoch_loader(int next_epoch) {
  if (next_epoch >= config_.max_epochs || stop_requested_ || interrupt_requested() || !plugins_->transforms_see_only_items())
    return;
  if (next_epoch_loader_epoch_ < 0 && !plugins_->empty())
    log_->info("the loader makes each next epoch's samples while an epoch ends: its transform plugins see nothing but samples");
  next_epoch_loader_ = loader_for(next_epoch, 0);
  next_epoch_loader_epoch_ = next_epoch;
}

// One batch: forward, backward, and an optimizer step every grad_accum batches
// (and at the end of the epoch, so no gradient is carried into the next one).
void Trainer::train_step(const Batch& batch, int local_step, int epoch_length) {
  const auto started = std::chrono::steady_clock::now();
  const int grad_accum = position_.grad_accum;
  const double lr = lr_at(position_.global_step);
  Json summary = batch_summary(batch);
  Json ed_state = {{"grad_accum", grad_accum}, {"lr", lr}, {"batch_size", config_.batch_size}};
  Json kwargs = {{"epoch", position_.epoch},         {"local_step", local_step},
                 {"global_step", position_.global_step}, {"project_name", config_.project_name},
                 {"log_folder", run_dir_.string()},  {"batch", summary},
                 {"ed_state", ed_state}};
  notify("on_step_start", kwargs);

  // Each batch's loss is divided by the size of its accumulation group, so
  // the summed gradient is the group's mean whatever grad_accum is.
  const int group_start = local_step / grad_accum * grad_accum;
  const int group_size = std::min(grad_accum, epoch_length - group_start);
  const bool optimizer_step = local_step + 1 == group_start + group_size;

  // Data parallel: this rank's rows of the batch; its loss weighted by its share, so that the
  // ranks' gradients summed are the whole batch's.
  const std::int64_t rows = batch.images.size(0), global_rows = ranks_ ? batch.global_rows : rows;
  double loss_value = kPacedLoss;
  if (paced()) {
    // Benchmark mode: the model's compute is a wait. The CPU is free meanwhile, as it is while a
    // GPU computes: the loader's workers and the plugin hosts run on.
    pace();
    if (optimizer_step) {
      if (leader()) model_access_->before_step();
      ++position_.optimizer_steps;
      if (leader()) model_access_->after_step(position_.global_step);
    }
  } else {
    model_->train();
    torch::Tensor loss;
    {
      AutocastScope autocast(amp_);
      loss = flow_matching_loss(model_, batch.images.to(device_), batch.tokens.to(device_), rng_, batch.first_row,
                                global_rows);
    }
    if (!ranks_) (loss / group_size).backward();
    else if (rows > 0) (loss * (double(rows) / double(global_rows)) / group_size).backward();
    if (optimizer_step) step_optimizer(lr);
    loss_value = rows > 0 ? loss.item<double>() : 0.0;
    if (ranks_) {
      auto share = torch::tensor({loss_value * double(rows) / double(global_rows)}, torch::kFloat64);
      ranks_->allreduce_sum(share);
      loss_value = share.item<double>();
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const double samples_per_s = global_rows / std::max(seconds, 1e-9);
  samples_seen_ += static_cast<double>(global_rows);
  train_seconds_ += seconds;

  log_metrics({{"step", position_.global_step},
               {"epoch", position_.epoch},
               {"local_step", local_step},
               {"loss", loss_value},
               {"lr", lr},
               {"grad_accum", grad_accum},
               {"optimizer_steps", position_.optimizer_steps},
               {"samples_per_s", samples_per_s}});
  if (leader())
    progress_->update({position_.epoch, config_.max_epochs, local_step, epoch_length, position_.global_step,
                       static_cast<std::int64_t>(config_.max_epochs) * epoch_length, loss_value, samples_per_s,
                       samplings_left()});

  kwargs["data_root"] = data_root_;
  kwargs["loss"] = loss_value;
  kwargs["lr"] = lr;
  kwargs["step_time_s"] = seconds;
  kwargs["samples_per_s"] = samples_per_s;
  notify("on_step_end", kwargs);

  ++position_.global_step;  // after on_step_end, as in EveryDream2
  position_.batches_done = local_step + 1;
  // Not waited for: the host answers after on_step_end, and the reply is kept when it comes.
  if (config_.plugin_state_every_n_steps > 0 && position_.global_step % config_.plugin_state_every_n_steps == 0)
    plugins_->snapshot_states(position_.global_step, "step", false);
  step_boundary();
}

void Trainer::step_optimizer(double lr) {
  std::vector<torch::Tensor> trained, gradients;
  if (ranks_) {
    // One bucket: every trained parameter's gradient, summed on rank 0.
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
  if (leader()) {
    model_access_->before_step();
    torch::nn::utils::clip_grad_norm_(model_->parameters(), config_.max_grad_norm);
    for (auto& group : optimizer_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    optimizer_->step();
    optimizer_->zero_grad();
  }
  ++position_.optimizer_steps;
  if (leader()) model_access_->after_step(position_.global_step);
  if (!ranks_) return;
  // Rank 0's weights, whatever model access did to them, on every rank: the ranks never drift apart.
  torch::NoGradGuard no_grad;
  auto parameters = model_->parameters();
  auto weights = flatten(parameters);
  ranks_->broadcast(weights);
  if (leader()) return;
  unflatten(weights, parameters);
  for (auto& parameter : parameters) parameter.mutable_grad() = torch::Tensor();
}

// On rank 0, over the whole validation set (the other ranks go on to the next step boundary).
void Trainer::validate(int epoch) {
  if (validation_.examples.empty() || !leader()) return;
  torch::NoGradGuard no_grad;
  model_->eval();
  // The same noise and timesteps every epoch, so val_loss moves only with the model.
  auto rng = at::make_generator<at::CPUGeneratorImpl>(config_.seed + 1);
  LoaderOptions options;
  options.batch_size = config_.batch_size;
  options.workers = config_.num_workers;
  options.max_tokens = config_.max_tokens;
  options.seed = config_.seed;
  options.shuffle = false;
  EpochLoader loader(validation_, vocab_, /*transforms=*/nullptr, options, 0);
  double total = 0;
  while (auto batch = loader.next()) {
    if (paced()) {
      pace();
      total += kPacedLoss * batch->images.size(0);
      continue;
    }
    AutocastScope autocast(amp_);
    auto loss = flow_matching_loss(model_, batch->images.to(device_), batch->tokens.to(device_), rng);
    total += loss.item<double>() * batch->images.size(0);
  }
  const double val_loss = total / validation_.examples.size();
  progress_->clear();
  log_->info("epoch {}/{}: val_loss {:.5f}", epoch + 1, config_.max_epochs, val_loss);
  log_metrics({{"step", position_.global_step}, {"epoch", epoch}, {"val_loss", val_loss}});
  notify("on_validation_end", {{"epoch", epoch}, {"global_step", position_.global_step}, {"val_loss", val_loss}});
}

// Sample grids still to come after the current step: per step, per epoch and the final one.
int Trainer::samplings_left() const {
  const std::int64_t total = static_cast<std::int64_t>(config_.max_epochs) * epoch_length_;
  const std::int64_t done = position_.global_step + 1;
  int left = 1;
  if (config_.sample_steps > 0) left += static_cast<int>(total / config_.sample_steps - done / config_.sample_steps);
  if (config_.sample_every_n_epochs > 0)
    left += (config_.max_epochs - 1) / config_.sample_every_n_epochs - position_.epoch / config_.sample_every_n_epochs;
  return left;
}

void Trainer::write_samples(const std::string& name) {
  if (paced() || !leader()) return;  // sampling is the model's compute, and the model is not trained
  const auto started = std::chrono::steady_clock::now();
  auto prompts = default_prompts(config_, validation_, train_);
  if (prompts.empty()) return;
  for (auto& prompt : prompts)
    for (auto& word : vocab_.unknown_words(prompt))
      log_->warn("sample prompt \"{}\": the word \"{}\" is not in the vocabulary", prompt, word);
  SampleOptions options;
  options.steps = config_.sample_inference_steps;
  options.guidance = config_.sample_guidance;
  options.seed = config_.seed;
  options.per_prompt = 4;
  options.amp = amp_;
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "-gs%06lld", static_cast<long long>(position_.global_step));
  auto grid = write_sample_grid(run_dir_ / "samples" / (name + suffix), model_, vocab_, prompts, options);
  summary_.last_samples = grid.png;
  events_->image("samples", position_.global_step, grid.image);
  progress_->add_sampling_time(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  progress_->clear();
  log_->info("samples: {}", summary_.last_samples.string());
}

// ckpt_every_n_minutes since the last checkpoint (or the start).
bool Trainer::checkpoint_time_due() const {
  if (config_.ckpt_every_n_minutes <= 0 || !leader()) return false;
  const double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_save_).count() / 60;
  return minutes >= config_.ckpt_every_n_minutes;
}

// Epoch and time checkpoints beyond the newest keep_last_n_checkpoints are deleted; the others
// (final, interrupted, errored, requested) were asked for one by one and stay.
void Trainer::prune_checkpoints() {
  if (config_.keep_last_n_checkpoints <= 0) return;
  std::vector<fs::path> routine;
  for (auto& entry : fs::directory_iterator(run_dir_ / "checkpoints")) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".pt" && (name.rfind("epoch-", 0) == 0 || name.rfind("time-", 0) == 0))
      routine.push_back(entry.path());
  }
  // Names end in -gsNNNNNN.pt: the step, zero-padded, sorts them oldest first.
  std::sort(routine.begin(), routine.end(), [](const fs::path& a, const fs::path& b) {
    return a.filename().string().substr(a.filename().string().rfind("-gs")) <
           b.filename().string().substr(b.filename().string().rfind("-gs"));
  });
  const auto keep = static_cast<std::size_t>(config_.keep_last_n_checkpoints);
  for (std::size_t i = 0; i + keep < routine.size(); ++i) {
    if (routine[i] == summary_.last_checkpoint) continue;
    fs::remove(routine[i]);
    fs::remove_all(routine[i].string() + ".files");  // what model-access plugins saved with it
    log_->info("removed {} (keep_last_n_checkpoints {})", routine[i].filename().string(), keep);
  }
}

// Rank 0's alone: every rank holds the same weights, and a resumed run hands them to its ranks.
fs::path Trainer::save(const std::string& reason, const std::string& tag) {
  if (!leader()) return {};
  char name[96];
  std::snprintf(name, sizeof name, "%s%s%s-ep%04d-gs%06lld.pt", reason.c_str(), tag.empty() ? "" : "-", tag.c_str(),
                position_.epoch, static_cast<long long>(position_.global_step));
  const fs::path path = run_dir_ / "checkpoints" / name;
  // After a signal or an error the plugins are not asked (they may be why): their latest states go in.
  if (reason != "interrupted" && reason != "errored") plugins_->snapshot_states(position_.global_step, "checkpoint", true);
  Json requested = Json::array();
  for (const auto& saved : requested_checkpoints_)
    requested.push_back({{"path", saved.path.string()}, {"plugin", saved.source}, {"tag", saved.tag}});
  save_checkpoint(path, model_, optimizer_.get(), rng_,
                  {position_, reason, tag, config_.json, vocab_, plugins_->saved_states(), requested});
  summary_.last_checkpoint = path;
  last_save_ = std::chrono::steady_clock::now();
  progress_->clear();
  log_->info("checkpoint ({}) {}", reason, path.string());
  prune_checkpoints();
  model_access_->saved(path, reason, position_.global_step);
  Json kwargs = {{"path", path.string()},
                 {"reason", reason},
                 {"epoch", position_.epoch},
                 {"global_step", position_.global_step}};
  if (!tag.empty()) kwargs["tag"] = tag;
  notify("on_checkpoint_saved", kwargs);
  return path;
}

// A plugin cannot reach the run folder: it asks, and only for what the trainer saved on its own request.
void Trainer::delete_requested_checkpoint(const std::string& source, const Json& request) {
  const bool by_path = request.contains("path");
  const std::string wanted = by_path ? request["path"].get<std::string>() : request["tag"].get<std::string>();
  const auto found = std::find_if(requested_checkpoints_.rbegin(), requested_checkpoints_.rend(), [&](const auto& saved) {
    return saved.source == source && (by_path ? saved.path == fs::path(wanted) : saved.tag == wanted);
  });
  if (found == requested_checkpoints_.rend()) {
    log_->warn("{} asked to delete {}{}, which is not a checkpoint saved on its request: refused", source,
               by_path ? "" : "the checkpoint tagged ", wanted);
    return;
  }
  std::error_code error;
  fs::remove(found->path, error);
  if (error) log_->warn("could not delete {} for {}: {}", found->path.string(), source, error.message());
  else log_->info("deleted {} for {}", found->path.string(), source);
  requested_checkpoints_.erase(std::next(found).base());
}

// ---------------------------------------------------------------------------
// Plugins: hooks out, control requests in.
// ---------------------------------------------------------------------------

// Observer hooks run once, on rank 0; every rank reaches the step boundary after them.
void Trainer::call(const std::string& hook, const Json& kwargs) {
  if (leader()) {
    plugins_->call(hook, with_rank(kwargs));
    if (observer_)
      for (auto& request : observer_(hook, kwargs)) observer_requests_.emplace_back("observer", request);
  }
  step_boundary();
}

void Trainer::notify(const std::string& hook, const Json& kwargs) {
  if (!leader()) return;
  plugins_->notify(hook, with_rank(kwargs));
  if (observer_)
    for (auto& request : observer_(hook, kwargs)) observer_requests_.emplace_back("observer", request);
}

Json Trainer::with_rank(Json kwargs) const {
  if (ranks_) kwargs.update({{"rank", ranks_->rank()}, {"world_size", ranks_->world_size()}});
  return kwargs;
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
  if (seen[0].item<std::int64_t>() > 0 && agreed_signal_ == 0) agreed_signal_ = interrupted() ? g_interrupt.load() : SIGTERM;
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

bool Trainer::interrupt_requested() const { return ranks_ ? agreed_signal_ != 0 : interrupted(); }
int Trainer::interrupt_signal() const { return ranks_ ? agreed_signal_ : g_interrupt.load(); }

void Trainer::handle_control_requests() {
  if (!leader()) {
    for (auto& request : plugins_->take_control_requests())
      log_->warn("{} asked {} on rank {}: control is rank 0's (its plugins' requests), so this one is not applied",
                 request.plugin, request.request.dump(), ranks_->rank());
    for (const auto& plugin : plugins_->changed_plugins()) plugins_->reload(plugin, true, position_.global_step);
    return;
  }
  write_live_report(false);
  for (auto& request : plugins_->take_control_requests()) apply_control(request.plugin, request.request);
  for (auto& [source, request] : std::exchange(observer_requests_, {})) apply_control(source, request);
  for (const auto& request : run_control::take(run_dir_)) run_control::answer(run_dir_, request, apply_user_request(request));
  for (const auto& plugin : plugins_->changed_plugins()) {
    log_->warn("{}: its files changed: restarting it with its state (--watch-plugins)", plugin);
    plugins_->reload(plugin, true, position_.global_step);
  }
}

// What `bulkhead plugins restart|stop` and `bulkhead run save|stop` (and the web view) asked, in
// RUN_DIR/control. A save and a stop go the way a plugin's control requests go.
run_control::Answer Trainer::apply_user_request(const run_control::Request& request) {
  using run_control::Action;
  const std::string step = " at step " + std::to_string(position_.global_step);
  switch (request.action) {
    case Action::save_checkpoint:
      apply_control(kUserSource, {{"action", "save_checkpoint"}, {"reason", "asked in " + (run_dir_ / "control").string()}});
      return {true, "a checkpoint will be saved at the next optimizer step (asked" + step + ")"};
    case Action::stop_run:
      apply_control(kUserSource, {{"action", "stop"}, {"reason", "asked in " + (run_dir_ / "control").string()}});
      return {true, "training stops at the next optimizer step (asked" + step + "), then saves its final checkpoint"};
    case Action::restart_plugin:
    case Action::stop_plugin:
      break;
  }
  const std::string& plugin = request.plugin;
  const bool restart = request.action == Action::restart_plugin;
  const bool known = restart ? plugins_->reload(plugin, request.keep_state, position_.global_step)
                             : plugins_->switch_off(plugin, "stopped by the user" + step);
  if (known && ranks_) decision_[restart ? "reload" : "switch_off"].push_back(
      restart ? Json{{"plugin", plugin}, {"keep_state", request.keep_state}} : Json(plugin));
  if (known)
    return {true, restart ? "restarted " + plugin + step + (request.keep_state ? "" : ", without its state")
                          : "stopped " + plugin + step + ": it is off for the rest of this run (restart turns it back on)"};
  const std::string names = fmt::format("{}", fmt::join(plugins_->names(), ", "));
  log_->warn("{} asked for an unknown plugin '{}' (plugins: {})", restart ? "restart" : "stop", plugin, names);
  return {false, "no plugin named " + plugin + " in this run (plugins: " + names + ")"};
}

void Trainer::apply_control(const std::string& source, const Json& request) {
  auto errors = Schemas::instance().validate("protocol/control.schema.json", Json::array({request}));
  if (!errors.empty()) {
    log_->warn("control request from {} rejected: {} ({})", source, request.dump(), errors.front().to_string());
    return;
  }
  const std::string action = request.at("action");
  const std::string reason = request.value("reason", "");
  if (action == "stop") {
    stop_requested_ = true;
    if (ranks_) decision_["stop"] = true;
    log_->warn("{} asked to stop training{}", source, reason.empty() ? "" : ": " + reason);
  } else if (action == "save_checkpoint") {
    checkpoint_requests_.emplace_back(source, request.value("tag", ""));
    log_->info("{} asked for a checkpoint{}", source, reason.empty() ? "" : ": " + reason);
  } else if (action == "delete_checkpoint") {
    delete_requested_checkpoint(source, request);
  } else if (action == "set_arg" && request.at("name") != "grad_accum") {
    // The schema's whitelist may grow before the trainer learns the new name: refuse, never guess.
    log_->warn("{} asked to set {}, which this trainer cannot change", source, request.at("name").get<std::string>());
  } else if (action == "set_arg") {
    // grad_accum changes at the next epoch boundary.
    position_.next_grad_accum = request.at("value");
    if (ranks_) decision_["next_grad_accum"] = position_.next_grad_accum;
    // Between epochs (on_epoch_end) position_.epoch is already the next one; within one, it is the current one.
    const int next_epoch = position_.batches_done == 0 ? position_.epoch : position_.epoch + 1;
    log_->info("{} set grad_accum to {} from epoch {}", source, position_.next_grad_accum, next_epoch + 1);
  }
}

void Trainer::check_abort() {
  if (auto reason = plugins_->abort_reason()) throw TrainingAborted("plugin failure: " + *reason);
}

// plugin-report.live.json: the plugins' report so far, and where training stands, every few
// seconds and once more at the end: what the web view's plugin table shows while the run goes on.
void Trainer::write_live_report(bool at_end) {
  const auto now = std::chrono::steady_clock::now();
  if (!leader() || (!at_end && now - last_live_report_ < kLiveReportEvery)) return;
  last_live_report_ = now;
  Json report = plugins_->report();
  report["progress"] = {{"epoch", position_.epoch},
                        {"max_epochs", config_.max_epochs},
                        {"epoch_length", epoch_length_},
                        {"global_step", position_.global_step},
                        {"written_at", std::time(nullptr)}};
  try {
    write_file_atomically(run_dir_ / "plugin-report.live.json", report.dump(2) + "\n");
  } catch (const IoError& e) {  // once: a full disk would repeat it every few seconds
    if (!std::exchange(live_report_failed_, true)) log_->warn("{} (the live report is not updated)", e.what());
  }
}

void Trainer::finish_plugins() {
  plugins_->shutdown();
  try {
    write_file_atomically(run_dir_ / "plugin-report.json", plugins_->report().dump(2) + "\n");
  } catch (const IoError& e) {  // the report is worth a line, not the run's outcome
    log_->error("{}", e.what());
  }
  write_live_report(true);
  if (!plugins_->empty()) log_->info("plugins:\n{}", plugins_->report_table());
}

Json Trainer::run_kwargs() const {
  return {{"project_name", config_.project_name}, {"log_folder", run_dir_.string()}, {"data_root", data_root_}};
}

// Step hooks carry the batch's captions and shape; pixels only for plugins that asked.
Json Trainer::batch_summary(const Batch& batch) const {
  Json shape = batch.images.sizes().vec();
  Json summary = {{"captions", batch.captions}, {"shape", shape}};
  if (plugins_->wants_tensors()) {
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(batch.images.data_ptr<float>());
    summary["image"] = {{"dtype", "float32"},
                        {"shape", shape},
                        {"data", Json::binary(std::vector<std::uint8_t>(bytes, bytes + batch.images.nbytes()))}};
  }
  return summary;
}

// Linear warm-up, then cosine decay to zero at the last step (or constant).
// Counted in batches, so a grad_accum change does not move the schedule.
double Trainer::lr_at(std::int64_t step) const {
  if (step < config_.lr_warmup_steps) return config_.lr * double(step + 1) / config_.lr_warmup_steps;
  if (config_.lr_scheduler == "constant") return config_.lr;
  const double total = double(config_.max_epochs) * epoch_length_ - config_.lr_warmup_steps;
  const double progress = std::min(1.0, double(step - config_.lr_warmup_steps) / std::max(1.0, total));
  return config_.lr * 0.5 * (1 + std::cos(M_PI * progress));
}

void Trainer::log_metrics(Json record) {
  if (!leader()) return;
  // nlohmann writes doubles in the shortest form that reads back to the same bits.
  metrics_ << record.dump() << "\n";
  metrics_.flush();
  if (!metrics_) throw IoError(run_dir_ / "metrics.jsonl", "write", errno ? errno : EIO);
  for (auto& [key, value] : record.items())
    if (key != "step" && key != "epoch" && key != "local_step") events_->scalar(key, record.at("step"), value.get<float>());
  notify("on_log", {{"metrics", record}});
}

}  // namespace bulkhead
