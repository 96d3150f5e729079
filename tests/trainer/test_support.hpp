// Shared helpers for the trainer tests: tiny configs, runs, metrics and weights.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/paths.hpp"
#include "train/checkpoint.hpp"
#include "train/config.hpp"
#include "train/image_io.hpp"
#include "train/trainer.hpp"

namespace bulkhead::testing {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// A fresh folder per test.
inline fs::path scratch(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::path(::testing::TempDir()) / "bulkhead-trainer" / (std::string(info->name()) + "-" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Small enough that an epoch of the 450 built-in shapes takes about a second on one core.
inline Json tiny_config(const fs::path& run_dir, int max_epochs = 2) {
  return {{"run_dir", run_dir.string()},
          {"max_epochs", max_epochs},
          {"resolution", 16},
          {"batch_size", 32},
          {"lr", 0.003},
          {"lr_warmup_steps", 5},
          {"max_tokens", 16},
          {"num_threads", 1},
          {"num_workers", 2},
          {"sample_inference_steps", 2},
          {"sample_every_n_epochs", 0},
          {"save_every_n_epochs", 0},
          {"model", {{"channels", 8}, {"channel_mults", {1, 2}}, {"embed_dim", 32}}}};
}

// config_file: where the config "lives", for what resolves against its folder (data, plugins).
inline RunSummary train(const Json& user, std::optional<fs::path> resume = std::nullopt,
                        Trainer::HookObserver observer = {}, const fs::path& config_file = {}) {
  Trainer trainer(resolve_config(user, config_file.empty() ? "test" : config_file.string(), config_file.parent_path()),
                  std::move(resume));
  if (observer) trainer.set_hook_observer(std::move(observer));
  return trainer.run();
}

// metrics.jsonl records of one kind: "loss" (steps) or "val_loss" (epochs).
inline std::vector<Json> read_metrics(const fs::path& run_dir, const std::string& kind = "loss") {
  std::vector<Json> records;
  std::ifstream in(run_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    Json record = Json::parse(line);
    if (record.contains(kind)) records.push_back(record);
  }
  return records;
}

inline std::vector<torch::Tensor> weights(const fs::path& checkpoint_path) {
  Checkpoint checkpoint(checkpoint_path);
  return checkpoint.make_model()->parameters();
}

inline bool same_weights(const fs::path& a, const fs::path& b) {
  auto wa = weights(a), wb = weights(b);
  if (wa.size() != wb.size()) return false;
  for (std::size_t i = 0; i < wa.size(); ++i)
    if (!torch::equal(wa[i], wb[i])) return false;
  return true;
}

// A 20x12 image (not square: centre-cropped) of one red level.
inline void write_test_png(const fs::path& path, std::uint8_t red) {
  Image image;
  image.width = 20;
  image.height = 12;
  image.data.assign(std::size_t(20) * 12 * 3, 0);
  for (std::size_t i = 0; i < image.data.size(); i += 3) image.data[i] = red;
  write_image(path, image);
}

// A test plugin's folder (tests/plugins/NAME).
inline fs::path test_plugin(const std::string& name) { return paths::home() / "tests" / "plugins" / name; }

inline Json read_json(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return Json();
  return Json::parse(in);
}

// A plugin's entry in a run's plugin-report.json, by its name; null when the report has none.
inline Json plugin_report_of(const fs::path& run_dir, const std::string& plugin) {
  const Json report = read_json(run_dir / "plugin-report.json");
  for (const auto& entry : report["plugins"])
    if (entry["name"] == plugin) return entry;
  return nullptr;
}

// One counter ("calls", "crashes", ...) of one hook in a plugin's report entry; 0 when the hook has none.
inline long hook_counter(const Json& plugin, const std::string& hook, const std::string& name) {
  return plugin["hooks"].contains(hook) ? plugin["hooks"][hook][name].get<long>() : 0;
}

inline std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Starts the real `bulkhead ARGS...`, its stdout and stderr going to `output`.
inline pid_t start_bulkhead(const std::vector<std::string>& args, const fs::path& output) {
  const pid_t child = fork();
  if (child == 0) {
    const int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0) _exit(126);
    std::vector<char*> argv{const_cast<char*>(BULKHEAD_EXE)};
    for (auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    execv(BULKHEAD_EXE, argv.data());
    _exit(127);
  }
  return child;
}

// Starts the real `bulkhead train --config CONFIG`, its stdout and stderr going to `output`.
inline pid_t start_trainer(const fs::path& config, const fs::path& output) {
  return start_bulkhead({"train", "--config", config.string()}, output);
}

// The exit status of a child, or 128 + the signal that killed it (as a shell reports it).
inline int wait_exit(pid_t child) {
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs the real `bulkhead ARGS...` to its end; its exit status, and what it printed in `output`.
inline int run_bulkhead(const std::vector<std::string>& args, const fs::path& output) {
  return wait_exit(start_bulkhead(args, output));
}

// Polls `done` every 20 ms for up to a minute; whether it came true.
inline bool wait_until(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

inline std::size_t lines_in(const fs::path& file) {
  std::ifstream in(file);
  std::size_t count = 0;
  for (std::string line; std::getline(in, line);) ++count;
  return count;
}

// A stop request from the observer when `when` says so.
inline Trainer::HookObserver stop_when(std::function<bool(const std::string&, const Json&)> when) {
  return [when](const std::string& hook, const Json& kwargs) -> std::vector<Json> {
    if (when(hook, kwargs)) return {{{"action", "stop"}, {"reason", "test"}}};
    return {};
  };
}

}  // namespace bulkhead::testing
