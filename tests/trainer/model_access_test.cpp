// Model access (issue 14), through real tiny training runs with the real Python plugin host:
//   - a plugin that asks for model_access without a grant stops training before it starts;
//   - on_model_load adds a token from an existing word; with freeze_rest every other parameter and
//     row stays bit-for-bit the same through training (AdamW's weight decay included);
//   - a valid update is applied; on_model_save's file lands beside the checkpoint; resume keeps
//     the token;
//   - a freeze_rest that would leave nothing to train is refused, and the run trains;
//   - every hostile update (NaN, Inf, wrong shape, frozen row, row outside, ungranted parameter,
//     huge norm, stale, future, short data, half valid, a crash with the write in hand) is refused,
//     counted, and leaves the weights bit-for-bit as a run without them;
//   - the bundled textual_inversion plugin teaches a base model a word that then steers `bulkhead sample`,
//     and so does a plugin written as EveryDream2's textual_inversion.py is, its host killed once;
//   - a class with on_model_load and no grant stops the run, naming the grant.
#include <array>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "test_support.hpp"
#include "train/model.hpp"

namespace bulkhead::testing {
namespace {

constexpr const char* kEmbedding = "caption.words.weight";

Json hostile_entry(const std::string& attack, bool granted = true) {
  Json entry = {{"name", test_plugin("model-hostile").string()},
                {"options", {{"attack", attack}}},
                {"max_restarts", 1000},
                {"restart_backoff_ms", 10},
                {"limits", {{"max_update_staleness_steps", 2}, {"model_region_slots", 8}}}};
  if (granted) entry["grant"] = {{"model_access", {{kEmbedding, {"read", "write"}}}}};
  return entry;
}

Json model_config(const fs::path& run_dir, const std::string& attack, int max_epochs = 1) {
  Json config = tiny_config(run_dir, max_epochs);
  config["plugins"] = Json::array({hostile_entry(attack)});
  config["validation_split"] = 0;
  return config;
}

std::map<std::string, torch::Tensor> named_weights(const fs::path& checkpoint) {
  Checkpoint loaded(checkpoint);
  std::map<std::string, torch::Tensor> weights;
  for (const auto& item : loaded.make_model()->named_parameters()) weights[item.key()] = item.value().detach().clone();
  return weights;
}

Json plugin_report(const fs::path& run_dir) { return read_json(run_dir / "plugin-report.json")["plugins"][0]; }

TEST(ModelAccess, AnUngrantedRequestIsAConfigErrorNamingTheGrant) {
  Json config = model_config(scratch("run") / "run", "none");
  config["plugins"] = Json::array({hostile_entry("none", /*granted=*/false)});
  try {
    resolve_config(config, "test");
    FAIL() << "a plugin asking for model access without a grant was accepted";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("model caption.words.weight write"), std::string::npos) << what;
    EXPECT_NE(what.find("\"model_access\""), std::string::npos) << what;  // the grant that would allow it
  }
}

// One run: epoch 1's checkpoint, a valid write at step 0, epoch 2's; then a resume to epoch 3.
TEST(ModelAccess, NewTokenTrainsAloneFrozenRowsStayBitIdenticalAndResumeKeepsIt) {
  const fs::path run = scratch("run") / "run";
  Json config = model_config(run, "valid", 2);
  config["save_every_n_epochs"] = 1;
  const RunSummary summary = train(config);
  const auto epoch_one = run / "checkpoints" / "epoch-ep0001-gs000015.pt";
  ASSERT_TRUE(fs::exists(epoch_one));

  Checkpoint final_checkpoint(summary.last_checkpoint);
  const auto token = final_checkpoint.info().vocab.id("zorblax");
  ASSERT_TRUE(token.has_value());
  const auto circle = *final_checkpoint.info().vocab.id("circle");
  const auto before = named_weights(epoch_one), after = named_weights(summary.last_checkpoint);
  for (const auto& [name, weight] : before) {
    if (name == kEmbedding) continue;
    EXPECT_TRUE(torch::equal(weight, after.at(name))) << name << " changed, but everything but zorblax is frozen";
  }
  const auto& words_before = before.at(kEmbedding);
  const auto& words_after = after.at(kEmbedding);
  for (std::int64_t row = 0; row < words_before.size(0); ++row) {
    if (row == *token) continue;
    EXPECT_TRUE(torch::equal(words_before[row], words_after[row])) << "frozen row " << row << " moved";
  }
  // The valid write replaced zorblax's row (a copy of circle's) with 0.05 everywhere; only
  // weight decay moves it after that (the built-in captions never say zorblax).
  EXPECT_FALSE(torch::equal(words_after[*token], words_after[circle]));
  EXPECT_NEAR(words_after[*token].mean().item<double>(), 0.05, 0.005);
  // It went through the shared region, and NaN written over its slot after the reply came too late.
  EXPECT_TRUE(torch::isfinite(words_after[*token]).all().item<bool>());
  EXPECT_EQ(hook_counter(plugin_report(run), "on_model_step", "invalid_replies"), 0);
  EXPECT_EQ(plugin_report(run)["model_access"]["updates_admitted"], 1);
  // The plugin could neither shrink nor grow the region under the trainer.
  const std::string log = read_text(run / "train.log");
  EXPECT_NE(log.find("ftruncate(region, 0) refused: EPERM"), std::string::npos) << log;
  EXPECT_EQ(log.find(") succeeded"), std::string::npos) << log;

  const fs::path saved = summary.last_checkpoint.string() + ".files/model-hostile/textual_inversions/zorblax.bin";
  ASSERT_TRUE(fs::exists(saved));
  EXPECT_EQ(fs::file_size(saved), std::size_t(words_after.size(1)) * 4);
  std::vector<float> row(static_cast<std::size_t>(words_after.size(1)));
  std::ifstream(saved, std::ios::binary).read(reinterpret_cast<char*>(row.data()), std::streamsize(row.size() * 4));
  EXPECT_FLOAT_EQ(row[0], words_after[*token][0].item<float>());

  config["max_epochs"] = 3;
  const RunSummary resumed = train(config, summary.last_checkpoint);
  EXPECT_EQ(resumed.epochs_done, 3);
  Checkpoint third(resumed.last_checkpoint);
  EXPECT_EQ(third.info().vocab.id("zorblax"), token);  // the same id, not added twice
  EXPECT_EQ(third.info().vocab.size(), final_checkpoint.info().vocab.size());
  EXPECT_NE(read_text(run / "train.log").find("token \"zorblax\" is in the vocabulary already"), std::string::npos);
}

TEST(ModelAccess, HostileUpdatesAreRefusedCountedAndChangeNoWeight) {
  const fs::path base = scratch("runs");
  const RunSummary quiet = train(model_config(base / "quiet", "none"));
  const RunSummary hostile = train(model_config(base / "hostile", "sequence"));
  EXPECT_TRUE(same_weights(quiet.last_checkpoint, hostile.last_checkpoint))
      << "a refused update changed a weight (or a frozen row moved)";
  const Json report = plugin_report(base / "hostile");
  // 13 refused replies, and the crash: each counted as the plugin's fault, none applied.
  EXPECT_EQ(hook_counter(report, "on_model_step", "invalid_replies"), 13) << report.dump(2);
  // The crash fails its own request, and any step's request sent before the trainer saw it die.
  EXPECT_GE(hook_counter(report, "on_model_step", "crashes"), 1) << report.dump(2);
  EXPECT_FALSE(report["quarantined"].get<bool>());
  const std::string log = read_text(base / "hostile" / "train.log");
  for (const char* reason : {"holds NaN", "holds infinity", "the tensor's shape is", "is frozen (not trainable)",
                             "is outside the parameter's", "no write grant on conv_out.bias", "over limits.max_update_norm",
                             "steps old", "which has not happened", "bytes, not the", "(update 2 of 2; none applied)",
                             "are outside the slot's", "not the slot lent with this request"})
    EXPECT_NE(log.find(reason), std::string::npos) << "train.log does not name the refusal: " << reason;
}

// A reply that would freeze every parameter (freeze_rest naming no trainable row) is refused and
// counted; the run trains the whole model as without it, instead of ending at the first step.
TEST(ModelAccess, FreezingEverythingIsRefusedAndTheRunTrains) {
  const fs::path run = scratch("runs") / "freeze";
  const RunSummary summary = train(model_config(run, "freeze_everything"));
  ASSERT_TRUE(fs::exists(summary.last_checkpoint));
  const Json report = plugin_report(run);
  EXPECT_EQ(hook_counter(report, "on_model_load", "invalid_replies"), 1) << report.dump(2);
  const std::string log = read_text(run / "train.log");
  EXPECT_NE(log.find("freeze_rest with no trainable rows would leave nothing to train"), std::string::npos) << log;
  EXPECT_EQ(log.find("everything else is frozen"), std::string::npos) << log;
}

// A step never waits for a slot: with the plugin's only slot held by a slow reply, the next steps'
// requests go without tensors, and the report counts them.
TEST(ModelAccess, AStepNeverWaitsForABusySlot) {
  const fs::path run = scratch("run") / "run";
  Json config = model_config(run, "slow");
  config["plugins"][0]["limits"]["model_region_slots"] = 1;
  const RunSummary summary = train(config);
  EXPECT_EQ(summary.outcome, RunOutcome::completed);
  const Json report = plugin_report(run);
  EXPECT_GE(report["model_access"]["sent_without_tensors"].get<long>(), 1) << report.dump(2);
  EXPECT_EQ(hook_counter(report, "on_model_step", "invalid_replies") + hook_counter(report, "on_model_step", "errors"), 0);
  EXPECT_NE(read_text(run / "train.log").find("came without tensors"), std::string::npos);
}

// A special token is a word a new token may start from: "<unknown>" has its row (id 2) like any word.
TEST(ModelAccess, ANewTokenMayStartFromTheUnknownToken) {
  const fs::path run = scratch("runs") / "unknown";
  const RunSummary summary = train(model_config(run, "from_unknown"));
  ASSERT_TRUE(fs::exists(summary.last_checkpoint));
  EXPECT_EQ(hook_counter(plugin_report(run), "on_model_load", "invalid_replies"), 0);
  const std::string log = read_text(run / "train.log");
  EXPECT_NE(log.find("its embedding starting as \"<unknown>\"'s"), std::string::npos) << log;
  EXPECT_TRUE(Checkpoint(summary.last_checkpoint).info().vocab.id("zorblax").has_value());
}

// EveryDream2's on_model_load / on_model_save, in the shape of its textual_inversion plugin, from a
// class path that train.json grants model access: the stand-ins' changes become the reply.
TEST(ModelAccess, EveryDream2TextualInversionHooksRunOnStandIns) {
  const fs::path dir = scratch("project");
  fs::create_directories(dir / "plugins");
  std::ofstream(dir / "plugins" / "ti.py") << R"(import os
from plugins.plugins import BasePlugin

class TI(BasePlugin):
    def on_model_load(self, **kwargs):
        ed_state = kwargs.get("ed_state")
        tokenizer, text_encoder = ed_state.tokenizer, ed_state.text_encoder
        tokenizer.add_tokens(["zorblax"])
        text_encoder.resize_token_embeddings(len(tokenizer))
        weight = text_encoder.get_input_embeddings().weight
        weight.data[tokenizer.convert_tokens_to_ids("zorblax")] = weight.data[tokenizer.convert_tokens_to_ids("circle")]

    def on_model_save(self, **kwargs):
        ed_state, path = kwargs["ed_state"], kwargs["diffusers_save_path"]
        row = ed_state.text_encoder.get_input_embeddings().weight.data[ed_state.tokenizer.convert_tokens_to_ids("zorblax")]
        os.makedirs(os.path.join(path, "textual_inversions"))
        with open(os.path.join(path, "textual_inversions", "zorblax.txt"), "w") as f:
            f.write(" ".join("%.6f" % float(v) for v in row))
)";
  Json config = tiny_config(dir / "run", 1);
  config["validation_split"] = 0;
  config["plugins"] = Json::array({{{"name", "plugins.ti.TI"}, {"grant", {{"model_access", {{kEmbedding, {"read", "write"}}}}}}}});
  std::ofstream(dir / "train.json") << config.dump();
  const RunSummary summary = train(read_config_file(dir / "train.json"), std::nullopt, {}, dir / "train.json");
  Checkpoint checkpoint(summary.last_checkpoint);
  const auto token = checkpoint.info().vocab.id("zorblax");
  ASSERT_TRUE(token.has_value()) << read_text(dir / "run" / "train.log");
  const auto words = named_weights(summary.last_checkpoint).at(kEmbedding);
  const std::string saved = read_text(summary.last_checkpoint.string() + ".files/TI/textual_inversions/zorblax.txt");
  ASSERT_FALSE(saved.empty()) << read_text(dir / "run" / "train.log");
  EXPECT_NEAR(std::stod(saved), words[*token][0].item<double>(), 1e-5);
}

// ---- the bundled textual_inversion plugin teaches the model a word that steers `bulkhead sample` ----

Image solid(std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  Image image;
  image.width = image.height = 16;
  image.data.resize(16 * 16 * 3);
  for (std::size_t i = 0; i < image.data.size(); i += 3) image.data[i] = r, image.data[i + 1] = g, image.data[i + 2] = b;
  return image;
}

// `count` solid images per colour, each captioned "a <word> square".
fs::path colour_folder(const fs::path& dir, const std::vector<std::pair<std::string, Image>>& colours, int count) {
  fs::create_directories(dir);
  for (const auto& [word, image] : colours)
    for (int i = 0; i < count; ++i) {
      const std::string name = word + "_" + std::to_string(i);
      write_image(dir / (name + ".png"), image);
      std::ofstream(dir / (name + ".txt")) << "a " << word << " square";
    }
  return dir;
}

// Mean of each channel of the image `bulkhead sample` draws for the prompt.
std::array<double, 3> sampled_colour(const fs::path& checkpoint, const std::string& prompt, const fs::path& out) {
  const int status = run_bulkhead({"sample", "--checkpoint", checkpoint.string(), "--prompt", prompt, "--out",
                                   out.string(), "--steps", "10", "--device", "cpu"}, out.string() + ".log");
  EXPECT_EQ(status, 0) << read_text(out.string() + ".log");
  const Image image = read_image(out);
  std::array<double, 3> mean{0, 0, 0};
  for (std::size_t i = 0; i < image.data.size(); ++i) mean[i % 3] += image.data[i];
  for (auto& channel : mean) channel /= double(image.data.size() / 3);
  return mean;
}

Json colour_config(const fs::path& data, const fs::path& run_dir, int max_epochs, double lr) {
  Json config = tiny_config(run_dir, max_epochs);
  config["data_root"] = data.string();
  config["validation_split"] = 0;
  config["batch_size"] = 8;
  config["lr"] = lr;
  config["lr_scheduler"] = "constant";
  config["lr_warmup_steps"] = 0;
  config["cond_dropout"] = 0.1;
  return config;
}

TEST(ModelAccess, TextualInversionTeachesAWordThatSteersSample) {
  const fs::path dir = scratch("ti");
  // A base model that knows red, green and blue squares.
  const auto base_data = colour_folder(dir / "base-data", {{"red", solid(230, 20, 20)}, {"green", solid(20, 230, 20)},
                                                          {"blue", solid(20, 20, 230)}}, 16);
  const RunSummary base = train(colour_config(base_data, dir / "base", 12, 0.01));
  // Out of process, the plugin teaches it "zorblax" from green squares, starting from "blue".
  const auto ti_data = colour_folder(dir / "ti-data", {{"zorblax", solid(20, 230, 20)}}, 32);
  Json config = colour_config(ti_data, dir / "ti", 12 + 10, 0.1);
  config["plugins"] = Json::array({{{"name", "textual_inversion"},
                                    {"options", {{"tokens", Json::array({{{"token", "zorblax"}, {"init_from", "blue"}}})}}},
                                    {"grant", {{"model_access", {{kEmbedding, {"read", "write"}}}}}}}});
  const RunSummary taught = train(config, base.last_checkpoint);

  const auto blue = sampled_colour(taught.last_checkpoint, "a blue square", dir / "blue.png");
  const auto zorblax = sampled_colour(taught.last_checkpoint, "a zorblax square", dir / "zorblax.png");
  const auto green = sampled_colour(taught.last_checkpoint, "a green square", dir / "green.png");
  EXPECT_GT(green[1], blue[1] + 40) << "the base model did not learn its colours";
  // zorblax started as blue; it is drawn green now.
  EXPECT_GT(zorblax[1], blue[1] + 40) << "zorblax G " << zorblax[1] << ", blue G " << blue[1];
  EXPECT_LT(zorblax[2], blue[2] - 40) << "zorblax B " << zorblax[2] << ", blue B " << blue[2];
  // Nothing but zorblax's row moved: "blue" is drawn as the base model drew it.
  EXPECT_TRUE(torch::equal(named_weights(base.last_checkpoint).at("conv_out.weight"),
                           named_weights(taught.last_checkpoint).at("conv_out.weight")));
  EXPECT_TRUE(fs::exists(taught.last_checkpoint.string() + ".files/textual_inversion/textual_inversions/zorblax.bin"));
  EXPECT_TRUE(fs::exists(taught.last_checkpoint.string() + ".files/textual_inversion/textual_inversions/zorblax.json"));
  // What the plugin's model access cost the training loop, for the record (the target is under 3 %).
  const std::string log = read_text(dir / "ti" / "train.log");
  const auto share = log.find("model access took ");
  ASSERT_NE(share, std::string::npos);
  std::cout << log.substr(share, log.find('\n', share) - share) << "\n";
}

// A plugin written as EveryDream2's plugins/textual_inversion.py is (its imports, its json beside it,
// its optimizer_config check, tokenize / add_tokens / resize / row copies, batch['tokens'] in
// on_step_start, row restores in on_step_end, torch.save into save_folder; our own code), granted
// model access in train.json: it teaches the base model a word that steers `bulkhead sample`, its
// host killed once mid-training, and the rows file it saves loads back with torch.
constexpr const char* kEveryDream2StylePlugin = R"(import json, logging, os, signal
import torch
from colorama import Fore
from plugins.plugins import BasePlugin
from train import EveryDreamTrainingState
from utils.sample_generator import clean_filename

class LearnsWords(BasePlugin):
    def __init__(self):
        with open(os.path.join(os.path.dirname(__file__), "textual_inversion.json")) as f:
            self.config = json.load(f)
        self.training_ids = None

    def on_model_load(self, **kwargs):
        ed_state: EveryDreamTrainingState = kwargs.get("ed_state")
        freezing = kwargs.get("optimizer_config", {}).get("text_encoder_freezing", {})
        layers = len(ed_state.text_encoder.text_model.encoder.layers)
        if (freezing.get("freeze_embeddings") != False or freezing.get("freeze_final_layer_norm") != True
                or freezing.get("unfreeze_last_n_layers", layers) > 0):
            raise RuntimeError("Misconfigured optimizer config")
        tokenizer = ed_state.tokenizer
        ids = lambda text: tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))
        new = [t["token"] for t in self.config["tokens"] if len(ids(t["token"])) > 1]
        logging.info(f"{Fore.GREEN}adding {new}{Fore.RESET}")
        assert tokenizer.add_tokens(new) == len(new)
        ed_state.text_encoder.resize_token_embeddings(len(tokenizer))
        weight = ed_state.text_encoder.get_input_embeddings().weight
        for t in self.config["tokens"]:
            weight.data[ids(t["token"])[0]] = weight.data[ids(t["initializer_word"])[0]]
        self.tokens = [t["token"] for t in self.config["tokens"]]
        self.training_ids = [ids(t)[0] for t in self.tokens]
        self.first = weight.data.detach().clone()

    def on_step_start(self, **kwargs):
        self.seen = torch.unique(torch.flatten(kwargs["batch"]["tokens"])).tolist()

    def on_step_end(self, **kwargs):
        self.ends = getattr(self, "ends", 0) + 1
        marker = os.path.join(self.scratch_dir, "killed")
        if self.ends == 10 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        weight = kwargs["ed_state"].text_encoder.get_input_embeddings().weight
        with torch.no_grad():
            for row in [r for r in self.seen if r not in self.training_ids]:
                weight[row] = self.first[row]

    def on_model_save(self, **kwargs):
        weight = kwargs["ed_state"].text_encoder.get_input_embeddings().weight
        folder = os.path.join(kwargs["save_folder"], "textual_inversions")
        os.makedirs(folder, exist_ok=True)
        for row, token in zip(self.training_ids, self.tokens):
            torch.save({token: weight[row]}, os.path.join(folder, clean_filename(token) + ".bin"))
)";

TEST(ModelAccess, AnEveryDream2StyleTextualInversionFileTeachesAWordThatSteersSample) {
  const fs::path dir = scratch("ed2-ti");
  const auto base_data = colour_folder(dir / "base-data", {{"red", solid(230, 20, 20)}, {"green", solid(20, 230, 20)},
                                                          {"blue", solid(20, 20, 230)}}, 16);
  const RunSummary base = train(colour_config(base_data, dir / "base", 12, 0.01));
  fs::create_directories(dir / "project" / "plugins");
  std::ofstream(dir / "project" / "plugins" / "learns_words.py") << kEveryDream2StylePlugin;
  std::ofstream(dir / "project" / "plugins" / "textual_inversion.json")
      << R"({"tokens": [{"token": "zorblax", "initializer_word": "blue"}]})";
  Json config = colour_config(colour_folder(dir / "ti-data", {{"zorblax", solid(20, 230, 20)}}, 32), dir / "ti", 12 + 10, 0.1);
  config["plugins"] = Json::array({{{"name", "plugins.learns_words.LearnsWords"},
                                    {"restart_backoff_ms", 10},
                                    {"grant", {{"model_access", {{kEmbedding, {"read", "write"}}}}}}}});
  std::ofstream(dir / "project" / "train.json") << config.dump();
  const RunSummary taught = train(read_config_file(dir / "project" / "train.json"), base.last_checkpoint, {},
                                  dir / "project" / "train.json");
  const std::string log = read_text(dir / "ti" / "train.log");

  const Json report = plugin_report(dir / "ti");
  EXPECT_EQ(hook_counter(report, "on_step_end", "crashes"), 1) << log;
  for (const char* hook : {"on_model_load", "on_step_start", "on_step_end", "on_model_save", "set_state"})
    EXPECT_EQ(hook_counter(report, hook, "errors") + hook_counter(report, hook, "invalid_replies"), 0) << hook << "\n" << log;
  const auto blue = sampled_colour(taught.last_checkpoint, "a blue square", dir / "blue.png");
  const auto zorblax = sampled_colour(taught.last_checkpoint, "a zorblax square", dir / "zorblax.png");
  EXPECT_GT(zorblax[1], blue[1] + 40) << "zorblax G " << zorblax[1] << ", blue G " << blue[1];
  EXPECT_LT(zorblax[2], blue[2] - 40) << "zorblax B " << zorblax[2] << ", blue B " << blue[2];
  EXPECT_TRUE(torch::equal(named_weights(base.last_checkpoint).at("conv_out.weight"),
                           named_weights(taught.last_checkpoint).at("conv_out.weight")));

  // The rows file loads back with torch, and holds the checkpoint's row of the token.
  const fs::path bin = taught.last_checkpoint.string() + ".files/LearnsWords/textual_inversions/zorblax.bin";
  const fs::path loaded = dir / "loaded.txt";
  const std::string load = "/usr/bin/python3 -c 'import sys, torch; print(\" \".join(\"%.6f\" % v for v in "
                           "torch.load(sys.argv[1])[\"zorblax\"].tolist()))' " + bin.string() + " > " + loaded.string() + " 2>&1";
  ASSERT_EQ(std::system(load.c_str()), 0) << read_text(loaded);
  Checkpoint checkpoint(taught.last_checkpoint);
  const auto row = named_weights(taught.last_checkpoint).at(kEmbedding)[*checkpoint.info().vocab.id("zorblax")];
  std::istringstream values(read_text(loaded));
  for (std::int64_t i = 0; i < row.size(0); ++i) {
    double value = 0;
    ASSERT_TRUE(values >> value) << read_text(loaded);
    EXPECT_NEAR(value, row[i].item<double>(), 1e-5) << i;
  }
}

// Without the grant, a class that implements on_model_load stops the run before training, saying
// which grant to add: it would otherwise train and teach nothing.
TEST(ModelAccess, AModelHookWithoutAGrantStopsTheRunNamingTheGrant) {
  const fs::path dir = scratch("ungranted");
  fs::create_directories(dir / "plugins");
  std::ofstream(dir / "plugins" / "learns_words.py") << kEveryDream2StylePlugin;
  std::ofstream(dir / "plugins" / "textual_inversion.json") << R"({"tokens": [{"token": "zorblax", "initializer_word": "blue"}]})";
  Json config = tiny_config(dir / "run", 1);
  config["plugins"] = Json::array({{{"name", "plugins.learns_words.LearnsWords"}}});
  std::ofstream(dir / "train.json") << config.dump();
  try {
    train(read_config_file(dir / "train.json"), std::nullopt, {}, dir / "train.json");
    FAIL() << "a plugin with on_model_load and no grant trained";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("plugin 'LearnsWords' implements on_model_load, which needs model access: add \"grant\": "
                        "{\"model_access\": {\"caption.words.weight\": [\"read\", \"write\"]}}"), std::string::npos)
        << what;
  }
  EXPECT_TRUE(read_metrics(dir / "run").empty());
}

TEST(ModelAccess, PluginsListShowsTheModelAccessAPluginAsksFor) {
  const fs::path out = scratch("list") / "list.txt";
  ASSERT_EQ(run_bulkhead({"plugins", "list"}, out), 0) << read_text(out);
  EXPECT_NE(read_text(out).find("permissions: model caption.words.weight read, model caption.words.weight write"),
            std::string::npos)
      << read_text(out);
}

}  // namespace
}  // namespace bulkhead::testing
