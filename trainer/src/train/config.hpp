// config.hpp — train.json: read, check against schemas/train.schema.json, fill defaults.
//
//   Json user = read_config_file("train.json");            // or Json::object() for all defaults
//   user["max_epochs"] = 3;                                 // command-line overrides go in before the check
//   TrainConfig config = resolve_config(user, "train.json"); // throws ConfigError listing every problem
//
// Defaults live only in the schema ("default" keywords), so the schema, the
// docs and the trainer cannot disagree.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/spelling.hpp"  // nearest_key, for its callers
#include "supervisor/plugin_settings.hpp"

namespace bulkhead {

using Json = nlohmann::json;

// Every problem found in a config, one per line: "<file>: <field>: <rule>".
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ModelConfig {
  int channels = 32;
  std::vector<int> channel_mults;
  int blocks_per_level = 1;
  int embed_dim = 128;
};

// The resolved config: every key present, every value checked.
struct TrainConfig {
  Json json;                           // what config.json in the run folder holds
  std::filesystem::path source_dir;    // folder of train.json (relative paths in it resolve here); "" for none

  // A path written in train.json: relative ones are relative to its folder.
  std::filesystem::path from_config(const std::filesystem::path& path) const {
    return path.is_relative() && !source_dir.empty() ? source_dir / path : path;
  }

  std::string project_name;
  std::string data_root;
  int max_epochs = 0;
  int batch_size = 0;
  int grad_accum = 1;
  double lr = 0;
  std::string lr_scheduler;
  int lr_warmup_steps = 0;
  double weight_decay = 0;
  double max_grad_norm = 0;
  int resolution = 0;
  double cond_dropout = 0;
  std::uint64_t seed = 0;
  double validation_split = 0;
  int save_every_n_epochs = 0;
  double ckpt_every_n_minutes = 0;     // 0: no time-based checkpoints
  int keep_last_n_checkpoints = 0;     // 0: keep all
  int max_rank_restarts = 3;           // data parallel: restarts of every rank from the last checkpoint after one dies
  int sample_every_n_epochs = 0;
  int sample_steps = 0;                // sample every N steps (EveryDream2's meaning); 0: never
  int plugin_state_every_n_steps = 0;  // ask stateful plugins for their state every N steps; 0: never
  bool plugin_state_each_epoch = true; // and after each on_epoch_end
  std::vector<std::string> sample_prompts;  // read from the file when train.json names one
  int sample_inference_steps = 0;      // Euler steps per sample
  double sample_guidance = 0;
  std::string device;
  bool amp = true;
  int num_workers = 1;
  int prefetch_batches = 4;     // batches the loader prepares ahead of the step
  bool batch_transforms = true; // one transform message per plugin and batch
  int num_threads = 0;
  std::string python;  // interpreter for Python plugins; "" = $BULKHEAD_PYTHON or /usr/bin/python3
  std::vector<PluginSettings> plugins;  // train.json's plugins, each with every default filled in
  std::int64_t max_image_pixels = 0;
  int max_tokens = 0;
  int log_every_n_steps = 0;
  double bench_pace_ms = 0;            // > 0: benchmark mode, a fixed wait instead of the model's compute
  std::string logdir;
  std::string run_dir;                 // "" when not set
  ModelConfig model;
  // Keys of an EveryDream2 train.json that Bulkhead does not use, with the reason (the schema's
  // x-everydream2-unused); accepted, left out of json, and logged once when training starts.
  std::vector<std::pair<std::string, std::string>> everydream2_unused;

  bool builtin_data() const { return data_root == "builtin:shapes"; }
};

// Parses a JSON file; a syntax error names the file, line and column.
Json read_config_file(const std::filesystem::path& path);

// The keys a method plugin may set (marked x-tunable in the schema): training knobs only, never
// paths, plugins, device or grants. Nested keys are dotted: "model.channels".
std::vector<std::string> tunable_keys();

// Checks user keys against the schema (unknown keys get a "did you mean"),
// fills defaults and returns the typed config. source names the file in messages.
TrainConfig resolve_config(const Json& user, const std::string& source,
                           const std::filesystem::path& source_dir = {});

}  // namespace bulkhead
