// trainer.cpp — a Trainer set up: device and threads, the run folder (or a rank's), the data, the
// model (new, or from the resumed checkpoint), the plugins and the optimizer. The loop and its
// other jobs are in trainer_*.cpp (docs/training.md).
#include "train/trainer_parts.hpp"

#include <algorithm>
#include <thread>

#include <fmt/ranges.h>

#include "common/atomic_file.hpp"
#include "common/log.hpp"
#include "supervisor/plugin_runner.hpp"
#include "train/model_access.hpp"
#include "train/tensorboard.hpp"

namespace bulkhead {
using namespace trainer_parts;

namespace {

// A data-parallel rank takes the GPU of its local rank: one rank per GPU.
torch::Device pick_device(const std::string& wanted, const std::optional<RankSettings>& rank) {
  if (wanted == "cuda" && !torch::cuda::is_available())
    throw ConfigError("device \"cuda\" was asked for, but LibTorch sees no CUDA device");
  if (wanted == "cuda" || (wanted == "auto" && torch::cuda::is_available()))
    return {torch::kCUDA, static_cast<c10::DeviceIndex>(rank ? rank->local_rank % torch::cuda::device_count() : 0)};
  return torch::kCPU;
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
  // A start that throws leaves train.log open: the error its caller then logs is the file's last line.
  const FileLog::OpenOnThrow open_on_throw(train_log_);
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

// A later run in this process (a study's next trial, a test) writes its own train.log, not this
// one: train_log_, the last member, closes it first.
Trainer::~Trainer() = default;

void Trainer::watch_plugins() { plugins_->watch_plugin_files(); }

void Trainer::create_run_folder(const std::optional<fs::path>& resume, bool overwrite) {
  if (!rank_) folder_.emplace(claim_run_folder(config_, resume, overwrite));
  else folder_.emplace(RunFolder::held_by_parent(config_.run_dir));  // the launcher claimed it
  if (rank_ && rank_->rank != 0) return create_rank_folder();
  run_dir_ = folder_->path();
  fs::create_directories(run_dir_ / "checkpoints");
  fs::create_directories(run_dir_ / "samples");
  train_log_.emplace((run_dir_ / "train.log").string());
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
  train_log_.emplace((run_dir_ / "train.log").string());
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

}  // namespace bulkhead
