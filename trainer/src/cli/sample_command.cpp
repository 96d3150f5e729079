// bulkhead sample — images from a checkpoint: one per prompt and seed, and their grid.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "common/log.hpp"
#include "train/checkpoint.hpp"
#include "train/image_io.hpp"
#include "train/sampling.hpp"

namespace fs = std::filesystem;

namespace {

struct SampleArgs {
  std::string checkpoint;
  std::vector<std::string> prompts;
  std::string out;
  std::vector<std::uint64_t> seeds{0};
  std::optional<int> steps;
  std::optional<double> guidance;
  std::string device = "auto";
};

// out.png -> out-p02-s7.png: prompt 2, seed 7, beside the grid.
fs::path image_path(const fs::path& out, std::size_t prompt, std::uint64_t seed) {
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, "-p%02zu-s%llu", prompt, static_cast<unsigned long long>(seed));
  return out.parent_path() / (out.stem().string() + suffix + out.extension().string());
}

// One prompt and one seed: out is the image. More: out is the grid (a row per prompt, a column per
// seed), each image is also written beside it, and out's .txt lists the rows' prompts.
void write_outputs(const SampleArgs& args, const std::vector<std::vector<bulkhead::Image>>& by_seed) {
  auto log = bulkhead::logger("trainer");
  if (args.prompts.size() == 1 && args.seeds.size() == 1) {
    bulkhead::write_image(args.out, by_seed[0][0]);
    log->info("wrote {}", args.out);
    return;
  }
  std::vector<bulkhead::Image> tiles;
  for (std::size_t p = 0; p < args.prompts.size(); ++p)
    for (std::size_t s = 0; s < args.seeds.size(); ++s) {
      bulkhead::write_image(image_path(args.out, p, args.seeds[s]), by_seed[s][p]);
      tiles.push_back(by_seed[s][p]);
    }
  bulkhead::write_image(args.out, bulkhead::make_grid(tiles, static_cast<int>(args.seeds.size()), 4));
  bulkhead::write_prompt_list(fs::path(args.out).replace_extension(".txt"), args.prompts);
  log->info("wrote {} ({} prompts x {} seeds) and each image beside it", args.out, args.prompts.size(),
            args.seeds.size());
}

void sample(const SampleArgs& args) {
  auto log = bulkhead::logger("trainer");
  const bool cuda = args.device == "cuda" || (args.device == "auto" && torch::cuda::is_available());
  if (cuda && !torch::cuda::is_available()) throw std::runtime_error("--device cuda: LibTorch sees no CUDA device");
  bulkhead::Checkpoint checkpoint(bulkhead::resolve_checkpoint_path(args.checkpoint),
                                  cuda ? torch::kCUDA : torch::kCPU);
  const auto& info = checkpoint.info();
  for (auto& prompt : args.prompts)
    for (auto& word : info.vocab.unknown_words(prompt))
      log->warn("the word \"{}\" is not in the model's vocabulary; it is read as unknown", word);

  bulkhead::FlowModel model = checkpoint.make_model();
  bulkhead::SampleOptions options;
  options.steps = args.steps.value_or(info.config.value("sample_inference_steps", 30));
  options.guidance = args.guidance.value_or(info.config.at("sample_guidance").get<double>());
  options.amp = cuda && info.config.at("amp").get<bool>();
  std::vector<std::vector<bulkhead::Image>> by_seed;
  for (auto seed : args.seeds) {
    options.seed = seed;
    by_seed.push_back(bulkhead::generate(model, info.vocab, args.prompts, options));
  }
  write_outputs(args, by_seed);
  log->info("{} steps, guidance {}", options.steps, options.guidance);
}

}  // namespace

namespace bulkhead {

void add_sample_command(CLI::App& app) {
  auto args = std::make_shared<SampleArgs>();
  auto* cmd = app.add_subcommand("sample", "Generate images from a checkpoint: every prompt with every seed");
  cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint file, or a run folder (its latest checkpoint)")
      ->required();
  cmd->add_option("--prompt", args->prompts, "What to draw, in the words of the training captions (repeatable)")
      ->required()
      ->take_all();
  cmd->add_option("--out", args->out, "Image to write (.png, .jpg); with several prompts or seeds, their grid")
      ->required()
      ->check(CLI::Validator(
          [](std::string& name) {
            const std::string ext = fs::path(name).extension().string();
            return ext == ".png" || bulkhead::is_jpeg_name(name) ? "" : "must end in .png, .jpg or .jpeg";
          },
          "FILE.png|.jpg"));
  cmd->add_option("--seed", args->seeds, "Noise seeds (repeatable; default 0)")->take_all();
  cmd->add_option("--steps", args->steps, "Euler steps (default: the run's sample_inference_steps)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--guidance", args->guidance, "Classifier-free guidance scale (default: the run's sample_guidance)")
      ->check(CLI::Range(0.0, 50.0));
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
