// bulkhead sample — one image from a checkpoint and a prompt.
#include <filesystem>
#include <optional>
#include <string>

#include "cli/commands.hpp"
#include "common/log.hpp"
#include "train/checkpoint.hpp"
#include "train/image_io.hpp"
#include "train/sampling.hpp"

namespace {

struct SampleArgs {
  std::string checkpoint;
  std::string prompt;
  std::string out;
  std::uint64_t seed = 0;
  std::optional<int> steps;
  std::optional<double> guidance;
  std::string device = "auto";
};

void sample(const SampleArgs& args) {
  auto log = bulkhead::logger("trainer");
  const bool cuda = args.device == "cuda" || (args.device == "auto" && torch::cuda::is_available());
  if (cuda && !torch::cuda::is_available()) throw std::runtime_error("--device cuda: LibTorch sees no CUDA device");
  bulkhead::Checkpoint checkpoint(bulkhead::resolve_checkpoint_path(args.checkpoint),
                                  cuda ? torch::kCUDA : torch::kCPU);
  const auto& info = checkpoint.info();
  for (auto& word : info.vocab.unknown_words(args.prompt))
    log->warn("the word \"{}\" is not in the model's vocabulary; it is read as unknown", word);

  bulkhead::FlowModel model = checkpoint.make_model();
  bulkhead::SampleOptions options;
  options.steps = args.steps.value_or(info.config.at("sample_steps").get<int>());
  options.guidance = args.guidance.value_or(info.config.at("sample_guidance").get<double>());
  options.seed = args.seed;
  options.amp = cuda && info.config.at("amp").get<bool>();
  auto images = bulkhead::generate(model, info.vocab, {args.prompt}, options);
  bulkhead::write_png(args.out, images.front());
  log->info("wrote {} ({}x{}, {} steps, guidance {})", args.out, images.front().width, images.front().height,
            options.steps, options.guidance);
}

}  // namespace

namespace bulkhead {

void add_sample_command(CLI::App& app) {
  auto args = std::make_shared<SampleArgs>();
  auto* cmd = app.add_subcommand("sample", "Generate an image from a checkpoint and a prompt");
  cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint file, or a run folder (its latest checkpoint)")
      ->required();
  cmd->add_option("--prompt", args->prompt, "What to draw, in the words of the training captions")->required();
  cmd->add_option("--out", args->out, "PNG file to write")->required();
  cmd->add_option("--seed", args->seed, "Noise seed (default 0)");
  cmd->add_option("--steps", args->steps, "Euler steps (default: the run's sample_steps)");
  cmd->add_option("--guidance", args->guidance, "Classifier-free guidance scale (default: the run's sample_guidance)");
  cmd->add_option("--device", args->device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->callback([args] {
    try {
      sample(*args);
    } catch (const std::exception& e) {
      bulkhead::logger("trainer")->error("{}", e.what());
      throw CLI::RuntimeError(1);
    }
  });
}

}  // namespace bulkhead
