// The happy path through real hosts: every catalogue hook round-trips, the handshake refuses
// what it must, and a host never outlives its trainer.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/schemas.hpp"
#include "supervisor/checker.hpp"
#include "supervisor/plugin_runner.hpp"
#include "support/proc.hpp"
#include "test_support.hpp"

namespace bulkhead {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("bulkhead-test-" + name + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

RunInfo run_in(const fs::path& dir) {
  RunInfo run;
  run.project_name = "test";
  run.run_dir = dir;
  return run;
}

// A plugin written on the spot: a folder with a plugin.json whose exec entry is this Python source.
fs::path python_plugin(const fs::path& dir, const std::string& name, const std::string& source) {
  fs::create_directories(dir / name);
  std::ofstream(dir / name / "plugin.json") << Json{{"name", name}, {"version", "1.0.0"}, {"description", "test plugin"},
                                                    {"runtime", "exec"}, {"entry", "main.py"}, {"hooks", Json::array()}}
                                                  .dump();
  std::ofstream(dir / name / "main.py") << "#!/usr/bin/python3\n" << source;
  // Readable by the plugin's user (nobody, when the tests run as root).
  fs::permissions(dir / name / "main.py", fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                              fs::perms::others_read | fs::perms::others_exec);
  return dir / name;
}

// Hooks the training loop does not send to every plugin: a method plugin's (MethodHooksRoundTripThroughARealHost),
// the model hooks (one granted plugin at a time: tests/trainer/model_access_test.cpp), and the state pair,
// which the runner asks of stateful plugins itself (tests/trainer/plugin_state_test.cpp).
bool not_broadcast(const Json& spec) {
  return spec.value("method", false) || spec.value("model_access", false) || spec.value("state", false);
}

TEST(Runner, EveryCatalogueHookRoundTripsThroughARealHost) {
  fs::path dir = fresh_dir("roundtrip");
  PluginSettings recorder;
  recorder.entry = test::test_plugin("recorder").string();
  recorder.options = {{"record_to", (dir / "calls.jsonl").string()}};
  recorder.grant = {{"write", {dir.string()}}};  // outside its jail, so granted
  fs::permissions(dir, fs::perms::all);          // and writable by its user (nobody, under root)
  {
    PluginRunner runner({recorder}, run_in(dir));
    Json hooks = Schemas::instance().hook_catalogue()["hooks"];
    for (const auto& [hook, spec] : Schemas::instance().hook_catalogue()["hooks"].items())
      if (not_broadcast(spec)) hooks.erase(hook);
    for (const auto& [hook, spec] : hooks.items()) {
      Json params = example_for_schema(spec["params"]);
      const std::string kind = spec["kind"];
      if (hook == "transform_caption") {
        EXPECT_EQ(runner.transform_caption("a, b"), "a, b");
      } else if (hook == "transform_pil_image") {
        Image image{8, 4, "RGB", std::vector<std::uint8_t>(96, 7)};
        EXPECT_EQ(runner.transform_pil_image(image).data, image.data);
      } else if (hook == "transform_captions") {
        EXPECT_EQ(runner.transform_captions({"a, b", "c"}), (std::vector<std::string>{"a, b", "c"}));
      } else if (hook == "transform_pil_images") {
        Image image{8, 4, "RGB", std::vector<std::uint8_t>(96, 7)};
        EXPECT_EQ(runner.transform_pil_images({image, image})[1].data, image.data);
      } else if (kind == "notify") {
        runner.notify(hook, params);
      } else {
        runner.call(hook, params);
      }
    }
    runner.call("on_training_end", example_for_schema(hooks["on_training_end"]["params"]));  // after every notify
    Json report = runner.report();
    for (const auto& [hook, spec] : hooks.items()) EXPECT_GE(report["plugins"][0]["hooks"][hook]["ok"].get<long>(), 1) << hook;
  }
  std::ifstream calls(dir / "calls.jsonl");
  std::set<std::string> seen;
  for (std::string line; std::getline(calls, line);) seen.insert(Json::parse(line)["hook"].get<std::string>());
  for (const auto& [hook, spec] : Schemas::instance().hook_catalogue()["hooks"].items())
    if (!not_broadcast(spec)) {
      EXPECT_TRUE(seen.count(hook)) << hook;
    }
}

// Images arrive bit-exact through every SDK, in each mode and size: through the host's image
// region (docs/protocol.md, section 2.2), which every SDK maps inside the full jail, and with the
// region turned off, small ones inline and large ones as attachment frames (section 2.1).
class ImagesThroughEverySdk : public testing::TestWithParam<std::string> {};

// Sends each image through `runner` and back, and checks it came back as it went.
void expect_images_round_trip(PluginRunner& runner, const std::string& plugin) {
  std::mt19937 random(7);
  const std::vector<std::pair<int, std::string>> sizes = {{8, "RGB"},   {64, "RGB"},   {256, "RGBA"}, {256, "L"},
                                                          {256, "RGB"}, {512, "RGB"},  {512, "L"},    {1024, "RGBA"},
                                                          {1024, "RGB"}, {1024, "L"}, {33, "RGBA"}};
  for (const auto& [side, mode] : sizes) {
    Image image{side, side + 1, mode, {}};
    image.data.resize(image.expected_size());
    for (auto& byte : image.data) byte = static_cast<std::uint8_t>(random());
    const Image back = runner.transform_pil_image(image);
    EXPECT_TRUE(back.data == image.data && back.mode == mode && back.width == side && back.height == side + 1)
        << plugin << ": a " << mode << " " << side << "x" << side + 1 << " image did not come back as it went";
  }
  const Json counters = runner.report()["plugins"][0]["hooks"]["transform_pil_image"];
  EXPECT_EQ(counters["ok"], sizes.size()) << counters.dump();
}

TEST_P(ImagesThroughEverySdk, ArriveBitExactThroughSharedMemory) {
  PluginSettings settings;
  settings.entry = test::test_plugin(GetParam()).string();
  PluginRunner runner({settings}, run_in(fresh_dir("images-" + GetParam())));
  expect_images_round_trip(runner, GetParam());
  const Json region = runner.report()["plugins"][0]["image_region"];
  EXPECT_EQ(region["requests_through_region"], 11) << GetParam() << " did not map its image region: " << region.dump();
  EXPECT_EQ(region["requests_inline"], 0) << region.dump();
}

TEST_P(ImagesThroughEverySdk, ArriveBitExactInTheMessageWithoutARegion) {
  PluginSettings settings;
  settings.entry = test::test_plugin(GetParam()).string();
  settings.limits.image_region_slots = 0;
  PluginRunner runner({settings}, run_in(fresh_dir("images-inline-" + GetParam())));
  expect_images_round_trip(runner, GetParam());
  EXPECT_TRUE(runner.report()["plugins"][0]["image_region"].is_null());
}

INSTANTIATE_TEST_SUITE_P(Sdks, ImagesThroughEverySdk, testing::Values("recorder", "noop-python", "noop-node"),
                         [](const testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// A bare-protocol plugin that never maps its image region (its hello says no "image_region") gets
// every image in the message, as before section 2.2.
TEST(ImageRegion, APluginThatDoesNotMapItGetsPixelsInTheMessage) {
  PluginSettings settings;
  settings.entry = (test::test_plugin("image-hostile") / "in-message").string();
  PluginRunner runner({settings}, run_in(fresh_dir("images-raw")));
  expect_images_round_trip(runner, "image-hostile-in-message");
  const Json region = runner.report()["plugins"][0]["image_region"];
  EXPECT_EQ(region["requests_through_region"], 0) << region.dump();
  EXPECT_EQ(region["requests_inline"], 11) << region.dump();
}

// Images that do not fit in a slot travel in the message; the others still go through the region.
TEST(ImageRegion, ImagesLargerThanASlotTravelInTheMessage) {
  PluginSettings settings;
  settings.entry = test::test_plugin("noop-python").string();
  settings.limits.image_region_slot_mb = 1;  // 1024x1025 images (3 and 4 MB) do not fit
  PluginRunner runner({settings}, run_in(fresh_dir("images-small-slots")));
  expect_images_round_trip(runner, "noop-python");
  const Json region = runner.report()["plugins"][0]["image_region"];
  EXPECT_EQ(region["requests_through_region"], 8) << region.dump();
  EXPECT_EQ(region["requests_inline"], 3) << region.dump();
}

// Inside the full jail, a plugin tries to write the trainer's request memory every way it can
// (a writable shared mapping, mprotect, pwrite, through /proc/self/fd, ftruncate), and goes on
// writing each reply's slot after sending it (for 100 ms before it serves the next request, while
// the trainer holds the images it took): what the trainer holds is exactly what it sent.
TEST(ImageRegion, APluginCanNeitherWriteTheRequestsNorChangeAReplyAfterSendingIt) {
  PluginSettings settings;
  settings.entry = test::test_plugin("image-hostile").string();
  PluginRunner runner({settings}, run_in(fresh_dir("images-hostile")));
  std::mt19937 random(11);
  std::vector<Image> sent, back;
  for (int i = 0; i < 4; ++i) {
    Image image{64 + i, 48, "RGB", {}};
    image.data.resize(image.expected_size());
    for (auto& byte : image.data) byte = static_cast<std::uint8_t>(random());
    back.push_back(runner.transform_pil_image(image));
    sent.push_back(std::move(image));
  }
  for (std::size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(back[i].data, sent[i].data) << "image " << i;
  const Json report = runner.report()["plugins"][0];
  EXPECT_EQ(report["hooks"]["transform_pil_image"]["ok"], 4) << report.dump();
  EXPECT_EQ(report["image_region"]["requests_through_region"], 4) << report.dump();
}

// The region outlives restarts: a host that crashes on every second image is replaced, the new one
// maps the same region, and the slot each crashed call was lent is given back (else the calls
// after the fourth crash would find none free and go in the message).
TEST(ImageRegion, SurvivesRestartsAndLosesNoSlot) {
  PluginSettings settings;
  settings.entry = test::test_plugin("fault").string();
  settings.options = {{"fault", "segfault"}, {"every", 2}, {"hooks", {"transform_pil_image"}}};
  settings.max_restarts = 50;
  settings.restart_backoff_ms = 1;
  PluginRunner runner({settings}, run_in(fresh_dir("images-restarts")));
  const Image image{32, 32, "RGB", std::vector<std::uint8_t>(32 * 32 * 3, 5)};
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(runner.transform_pil_image(image).data, image.data) << "call " << i;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // past the backoff: restarted by the next call
  }
  const Json report = runner.report()["plugins"][0];
  EXPECT_GE(report["restarts"].get<long>(), 4) << report.dump();
  EXPECT_GE(report["hooks"]["transform_pil_image"]["ok"].get<long>(), 5) << report.dump();
  EXPECT_EQ(report["image_region"]["requests_inline"], 0) << report.dump();
  EXPECT_GE(report["image_region"]["requests_through_region"].get<long>(), 10) << report.dump();
}

// A reply whose image points outside the slot lent with its request is invalid: the trainer
// reads nothing there, and the image passes through untouched.
TEST(ImageRegion, AReplyPointingOutsideItsSlotIsInvalid) {
  for (const auto& [attack, why] : std::vector<std::pair<std::string, std::string>>{
           {"elsewhere", "not in the slot lent with this request"}, {"past_end", "outside its slot"}}) {
    PluginSettings settings;
    settings.entry = test::test_plugin("image-hostile").string();
    settings.options = {{"attack", attack}};
    PluginRunner runner({settings}, run_in(fresh_dir("images-" + attack)));
    const Image image{16, 16, "L", std::vector<std::uint8_t>(256, 9)};
    EXPECT_EQ(runner.transform_pil_image(image).data, image.data) << attack;
    const Json hook = runner.report()["plugins"][0]["hooks"]["transform_pil_image"];
    EXPECT_EQ(hook["invalid_replies"], 1) << attack << ": " << hook.dump();
    EXPECT_NE(hook["last_fault"].get<std::string>().find(why), std::string::npos) << hook.dump();
  }
}

// A pool (train.json "pool"): transforms from several loader threads spread over the plugin's
// hosts, each its own process, and each image comes back as one host alone makes it.
TEST(Runner, APoolSpreadsTransformsOverItsHosts) {
  PluginSettings settings;
  settings.entry = "color_grade";
  Image image{64, 64, "RGB", std::vector<std::uint8_t>(64 * 64 * 3)};
  for (std::size_t i = 0; i < image.data.size(); ++i) image.data[i] = static_cast<std::uint8_t>(i * 7);
  const Image alone = PluginRunner({settings}, run_in(fresh_dir("pool-alone"))).transform_pil_image(image);
  settings.pool = 3;
  PluginRunner runner({settings}, run_in(fresh_dir("pool")));
  std::atomic<int> different{0};
  std::vector<std::thread> loaders;
  for (int t = 0; t < 6; ++t)
    loaders.emplace_back([&] {
      for (int i = 0; i < 15; ++i) different += runner.transform_pil_image(image).data != alone.data;
    });
  for (auto& loader : loaders) loader.join();
  EXPECT_EQ(different, 0);
  const Json hosts = runner.report()["plugins"];
  ASSERT_EQ(hosts.size(), 3u) << hosts.dump();
  long served = 0;
  for (const auto& host : hosts) {
    EXPECT_GT(host["hooks"]["transform_pil_image"]["ok"].get<long>(), 0) << host["name"] << " served nothing";
    served += host["hooks"]["transform_pil_image"]["calls"].get<long>();
  }
  EXPECT_EQ(served, 90);
  EXPECT_EQ(hosts[1]["name"], "color_grade.2");
}

TEST(Runner, APoolIsRefusedForAPluginWithHooksOtherThanTransforms) {
  PluginSettings settings;
  settings.entry = test::test_plugin("noop-python").string();
  settings.pool = 2;
  try {
    PluginRunner runner({settings}, run_in(fresh_dir("pool-refused")));
    FAIL() << "a pool of a plugin with on_step_end started";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("its manifest also declares on_step_end"), std::string::npos) << e.what();
  }
}

// Two entries of one plugin (other options, say) would share its report, state and cgroup: the
// second is refused before training, naming both entries.
TEST(Runner, APluginNamedTwiceIsRefusedNamingBothEntries) {
  PluginSettings first, second;
  first.entry = second.entry = test::test_plugin("noop-python").string();
  second.options = {{"any", 1}};
  try {
    PluginRunner runner({first, second}, run_in(fresh_dir("named-twice")));
    FAIL() << "a plugin named twice started twice";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("plugin 'noop-python' is named twice in train.json's plugins (entries 1 and 2)"),
              std::string::npos)
        << e.what();
  }
}

// A method plugin (tests/plugins/method_cpp) answers describe_method, suggest_trial and evaluate with
// values the runner hands back; what it does not implement answers nil. Each kind of plugin keeps its place.
TEST(Runner, MethodHooksRoundTripThroughARealHost) {
  fs::path dir = fresh_dir("method");
  PluginSettings method;
  method.entry = test::test_plugin("method_cpp").string();
  method.method = true;
  {
    PluginRunner runner({method}, run_in(dir));
    const auto& hooks = Schemas::instance().hook_catalogue()["hooks"];
    auto recipe = runner.ask("describe_method", example_for_schema(hooks["describe_method"]["params"]));
    ASSERT_TRUE(recipe) << runner.last_fault("describe_method");
    EXPECT_EQ((*recipe)["main_metric"], "val_loss");
    auto suggestion = runner.ask("suggest_trial", {{"trial", 0}, {"search_space", (*recipe)["search_space"]},
                                                   {"history", Json::array()}, {"higher_is_better", false}});
    ASSERT_TRUE(suggestion);
    EXPECT_EQ((*suggestion)["params"]["lr"], 0.001);
    auto extra = runner.ask("evaluate", {{"trial", 0}, {"params", {{"lr", 0.001}}}, {"metrics", {{"val_loss", 3.0}}}});
    ASSERT_TRUE(extra);
    EXPECT_EQ((*extra)["metrics"]["inverse_val_loss"], 0.25);
    EXPECT_FALSE(runner.ask("on_study_end", {{"trials", 1}, {"best_trial", 0}, {"best_score", 0.5}}))
        << "not implemented: nothing to hand back";
    EXPECT_EQ(runner.last_fault("describe_method"), "");
  }
  auto refused = [&dir](const PluginSettings& settings, const std::string& why) {
    try {
      PluginRunner runner({settings}, run_in(dir));
      ADD_FAILURE() << settings.entry << " must be refused: " << why;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  PluginSettings misplaced = method;
  misplaced.method = false;  // a method in train.json's plugins
  refused(misplaced, "is a method plugin");
  PluginSettings ordinary;
  ordinary.entry = test::test_plugin("recorder").string();
  ordinary.method = true;  // an ordinary plugin as train.json's method
  refused(ordinary, "is not a method plugin");
}

TEST(Runner, HandshakeRefusesAnotherProtocolVersionNamingBoth) {
  fs::path dir = fresh_dir("version");
  fs::path plugin = python_plugin(dir, "future", R"(
import os, zmq, msgpack
s = zmq.Context().socket(zmq.DEALER)
s.plain_username, s.plain_password = b"bulkhead", os.environ["BULKHEAD_TOKEN"].encode()
s.connect(os.environ["BULKHEAD_ENDPOINT"])
s.send(msgpack.packb([0, 0, "hello", {"protocol": 3, "token": os.environ["BULKHEAD_TOKEN"],
    "plugin": {"name": "future", "version": "1.0.0"}, "hooks": [], "runtime": {"name": "python"}}]))
s.poll(5000)
)");
  PluginSettings settings;
  settings.entry = plugin.string();
  try {
    PluginRunner runner({settings}, run_in(dir));
    FAIL() << "a protocol 3 plugin was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("trainer speaks protocol 1-2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("plugin speaks protocol 3"), std::string::npos) << e.what();
  }
}

TEST(Runner, HandshakeRefusesAWrongToken) {
  fs::path dir = fresh_dir("token");
  fs::path plugin = python_plugin(dir, "impostor", R"(
import os, zmq, msgpack
s = zmq.Context().socket(zmq.DEALER)
s.plain_username, s.plain_password = b"bulkhead", os.environ["BULKHEAD_TOKEN"].encode()
s.connect(os.environ["BULKHEAD_ENDPOINT"])
s.send(msgpack.packb([0, 0, "hello", {"protocol": 1, "token": "guessed",
    "plugin": {"name": "impostor", "version": "1.0.0"}, "hooks": [], "runtime": {"name": "python"}}]))
s.poll(5000)
)");
  PluginSettings settings;
  settings.entry = plugin.string();  // refused under the default policy, skip: a wrong token is not a passing fault
  EXPECT_THROW(PluginRunner({settings}, run_in(dir)), std::runtime_error);
}

TEST(Runner, AnUnknownPluginIsAClearErrorNamingTheEntry) {
  PluginSettings settings;
  settings.entry = "no-such-plugin";
  try {
    PluginRunner runner({settings}, run_in(fresh_dir("unknown")));
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("'no-such-plugin' not found"), std::string::npos) << e.what();
  }
  settings.entry = "plugins.no_such_module.Missing";  // an EveryDream2 class path that does not resolve
  try {
    PluginRunner runner({settings}, run_in(fresh_dir("unknown2")));
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("plugins.no_such_module.Missing"), std::string::npos) << e.what();
  }
}

std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> children;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream in(task.path() / "children");
    for (pid_t child; in >> child;) children.push_back(child);
  }
  return children;
}

bool gone(pid_t pid) { return !proc_alive(pid); }

TEST(Runner, HostDiesWhenTheTrainerIsKilledWithSigkill) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t trainer = fork();
  if (trainer == 0) {
    close(fds[0]);
    PluginSettings settings;
    settings.entry = "hook_logger";
    PluginRunner runner({settings}, run_in(fresh_dir("sigkill")));
    for (pid_t host : children_of(getpid())) [[maybe_unused]] auto n = write(fds[1], &host, sizeof host);
    close(fds[1]);
    pause();
    _exit(0);
  }
  close(fds[1]);
  std::vector<pid_t> hosts;
  for (pid_t host; read(fds[0], &host, sizeof host) == sizeof host;) hosts.push_back(host);
  ASSERT_FALSE(hosts.empty());
  kill(trainer, SIGKILL);
  waitpid(trainer, nullptr, 0);
  for (pid_t host : hosts) {
    for (int i = 0; i < 300 && !gone(host); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(gone(host)) << "host " << host << " outlived its trainer";
  }
}

// The bundled C++ plugins do what their manifests say.
std::string shuffled(const Json& options, const std::string& caption) {
  PluginSettings settings;
  settings.entry = "caption_tag_shuffle";
  settings.options = options;
  PluginRunner runner({settings}, run_in(fresh_dir("shuffle")));
  return runner.transform_caption(caption);
}

std::vector<std::string> sorted_tags(const std::string& caption) {
  std::vector<std::string> tags;
  std::stringstream parts(caption);
  for (std::string tag; std::getline(parts, tag, ',');) tags.push_back(tag.substr(tag.find_first_not_of(' ')));
  std::sort(tags.begin(), tags.end());
  return tags;
}

TEST(BundledPlugins, CaptionTagShuffleKeepsTheFirstTagsAndIsSeeded) {
  const std::string caption = "a photo of a cat, sitting, indoors, warm light, bokeh, film grain, 35mm";
  const std::string once = shuffled({{"keep_tags", 2}, {"seed", 7}}, caption);
  EXPECT_EQ(once.rfind("a photo of a cat, sitting, ", 0), 0u) << once;
  EXPECT_NE(once, caption) << "the other tags were not shuffled";
  EXPECT_EQ(sorted_tags(once), sorted_tags(caption));
  EXPECT_EQ(shuffled({{"keep_tags", 2}, {"seed", 7}}, caption), once) << "the same seed, the same order";
  EXPECT_NE(shuffled({{"keep_tags", 2}, {"seed", 8}}, caption), once) << "another seed, another order";
}

TEST(BundledPlugins, ImageColourAppliesGammaAndSaturation) {
  auto transformed = [](const Json& options, const Image& image) {
    PluginSettings settings;
    settings.entry = "image_colour";
    settings.options = options;
    PluginRunner runner({settings}, run_in(fresh_dir("colour")));
    return runner.transform_pil_image(image);
  };
  const Image image{2, 1, "RGB", {200, 100, 50, 64, 64, 64}};
  EXPECT_EQ(transformed({{"gamma", 1.0}, {"saturation", 1.0}}, image).data, image.data) << "identity";
  const Image brighter = transformed({{"gamma", 2.0}, {"saturation", 1.0}}, image);
  EXPECT_GT(brighter.data[3], 64) << "gamma 2 lifts the midtones";
  EXPECT_EQ(brighter.data[3], brighter.data[4]) << "a grey pixel stays grey";
  const Image grey = transformed({{"gamma", 1.0}, {"saturation", 0.0}}, image);
  EXPECT_EQ(grey.data[0], grey.data[1]);
  EXPECT_EQ(grey.data[1], grey.data[2]) << "saturation 0 leaves no colour";
}

// A Python plugin that starts a child and a grandchild that try to outlive it, and records
// their pids and whether leaving the process group (setsid) was refused.
// A Python plugin that starts a child, a grandchild it orphans, and a child that tries to leave
// the process group, each `sleep SECONDS` (which the test finds them by), and records in its
// granted out/ folder whether leaving the group was allowed.
fs::path spawning_plugin(const fs::path& dir) {
  fs::create_directories(dir / "spawner");
  fs::create_directories(dir / "out");
  fs::permissions(dir / "out", fs::perms::all);  // the plugin's user (nobody, under root) writes there
  std::ofstream(dir / "spawner" / "plugin.json")
      << Json{{"name", "spawner"}, {"version", "1.0.0"}, {"description", "starts children"},
              {"runtime", "python"}, {"entry", "spawner.Spawner"}, {"hooks", Json::array()}}
             .dump();
  std::ofstream(dir / "spawner" / "spawner.py") << R"(import os, subprocess
from bulkhead_plugin import BasePlugin

class Spawner(BasePlugin):
    def configure(self):
        seconds, out = str(self.options["seconds"]), self.options["out"]
        subprocess.Popen(["sleep", seconds])
        subprocess.Popen(["sh", "-c", "sleep %s & echo $!" % seconds], stdout=subprocess.PIPE).stdout.readline()
        try:
            subprocess.Popen(["sleep", seconds], start_new_session=True)
            setsid = "allowed"
        except OSError:
            setsid = "refused"
        with open(os.path.join(out, "setsid.tmp"), "w") as f:
            f.write(setsid)
        os.rename(os.path.join(out, "setsid.tmp"), os.path.join(out, "setsid"))
)";
  return dir / "spawner";
}

PluginSettings spawner_settings(const fs::path& dir, int seconds) {
  PluginSettings settings;
  settings.entry = (dir / "spawner").string();
  settings.options = {{"seconds", seconds}, {"out", (dir / "out").string()}};
  settings.grant = {{"write", {(dir / "out").string()}}};
  return settings;
}

// Host pids of the processes running `sleep SECONDS` (the plugin's own pids are its namespace's).
std::vector<pid_t> sleepers(int seconds) {
  std::vector<pid_t> found;
  const std::string wanted = std::string("sleep") + '\0' + std::to_string(seconds) + '\0';
  for (pid_t pid : proc_pids())
    if (read_proc_file("/proc/" + std::to_string(pid) + "/cmdline") == wanted) found.push_back(pid);
  return found;
}

// Waits up to 10 s for the plugin's record and its three sleepers.
std::string wait_for_spawned(const fs::path& dir, int seconds) {
  for (int i = 0; i < 1000 && (!fs::exists(dir / "out" / "setsid") || sleepers(seconds).size() < 2); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::string setsid;
  std::ifstream(dir / "out" / "setsid") >> setsid;
  return setsid;
}

void expect_gone_soon(int seconds) {
  for (int i = 0; i < 300 && !sleepers(seconds).empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(sleepers(seconds).empty()) << "a process started by a plugin outlived its trainer";
}

TEST(Runner, NoProcessAPluginStartedOutlivesAKilledTrainer) {
  fs::path dir = fresh_dir("spawn");
  spawning_plugin(dir);
  const int seconds = 600 + getpid() % 1000;
  pid_t trainer = fork();
  if (trainer == 0) {
    PluginRunner runner({spawner_settings(dir, seconds)}, run_in(dir / "run"));
    pause();
    _exit(0);
  }
  EXPECT_EQ(wait_for_spawned(dir, seconds), "refused") << "a plugin's child may not leave the process group";
  EXPECT_GE(sleepers(seconds).size(), 2u);

  kill(trainer, SIGKILL);
  waitpid(trainer, nullptr, 0);
  expect_gone_soon(seconds);
}

TEST(Runner, NoProcessAPluginStartedOutlivesShutdown) {
  fs::path dir = fresh_dir("spawn-shutdown");
  spawning_plugin(dir);
  const int seconds = 1600 + getpid() % 1000;
  {
    PluginRunner runner({spawner_settings(dir, seconds)}, run_in(dir / "run"));
    EXPECT_EQ(wait_for_spawned(dir, seconds), "refused");
    ASSERT_GE(sleepers(seconds).size(), 2u) << "the plugin never started its children";
  }
  expect_gone_soon(seconds);
}

// The jail, from inside: a plugin that tries to reach the network, dump core or gain privileges.
TEST(Jail, APluginCannotReachTheNetworkDumpCoreOrGainPrivileges) {
  fs::path dir = fresh_dir("jail");
  fs::create_directories(dir / "prisoner");
  std::ofstream(dir / "prisoner" / "plugin.json")
      << Json{{"name", "prisoner"}, {"version", "1.0.0"}, {"description", "tries the bars"}, {"runtime", "python"},
              {"entry", "prisoner.Prisoner"}, {"hooks", Json::array()}}
             .dump();
  std::ofstream(dir / "prisoner" / "prisoner.py") << R"(import json, os, resource, socket
from bulkhead_plugin import BasePlugin

def attempt(make):
    try:
        make().close()
        return "allowed"
    except OSError as e:
        return "refused: " + e.strerror

class Prisoner(BasePlugin):
    def configure(self):
        status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
        found = {
            "inet": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
            "inet6": attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)),
            "unix": attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)),
            "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
            "no_new_privs": status["NoNewPrivs"].strip(),
            "seccomp": status["Seccomp"].strip(),
        }
        out = self.options["out"]
        with open(os.path.join(out, "found.tmp"), "w") as f:
            json.dump(found, f)
        os.rename(os.path.join(out, "found.tmp"), os.path.join(out, "found.json"))
)";
  fs::create_directories(dir / "out");
  fs::permissions(dir / "out", fs::perms::all);  // the plugin's user (nobody, under root) writes there
  PluginSettings settings;
  settings.entry = (dir / "prisoner").string();
  settings.options = {{"out", (dir / "out").string()}};
  settings.grant = {{"write", {(dir / "out").string()}}};
  PluginRunner runner({settings}, run_in(dir / "run"));
  const fs::path found_file = dir / "out" / "found.json";
  for (int i = 0; i < 1000 && !fs::exists(found_file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(fs::exists(found_file));
  const Json found = Json::parse(std::ifstream(found_file));
  EXPECT_EQ(found["inet"], "refused: Permission denied") << found.dump();
  EXPECT_EQ(found["inet6"], "refused: Permission denied") << found.dump();
  EXPECT_EQ(found["unix"], "allowed") << "ZeroMQ's ipc needs local sockets";
  EXPECT_EQ(found["core"], Json::array({0, 0})) << "no core dumps";
  EXPECT_EQ(found["no_new_privs"], "1");
  EXPECT_EQ(found["seccomp"], "2") << "a seccomp filter is loaded";
}

TEST(PluginsCommand, CheckPassesEveryBundledPlugin) {
  PluginCatalog catalog;
  ASSERT_GE(catalog.plugins().size(), 3u);
  for (const auto& manifest : catalog.plugins()) {
    auto result = test::run((test::bin_dir() / "bulkhead").string() + " plugins check " + manifest.name);
    EXPECT_EQ(result.status, 0) << result.output;
    EXPECT_NE(result.output.find("PASS: " + manifest.name), std::string::npos) << result.output;
  }
}

// Plugin folders beyond the bundled one: --plugins-dir and $BULKHEAD_PLUGINS_PATH.
TEST(PluginsCommand, ListSearchesTheFoldersTheUserNames) {
  const std::string bulkhead = (test::bin_dir() / "bulkhead").string();
  const std::string tests = (paths::home() / "tests" / "plugins").string();
  auto bundled = test::run(bulkhead + " plugins list");
  EXPECT_EQ(bundled.output.find("noop-python"), std::string::npos) << bundled.output;
  for (const std::string& command : {"BULKHEAD_PLUGINS_PATH=" + tests + " " + bulkhead + " plugins list",
                                     bulkhead + " plugins --plugins-dir " + tests + " list"}) {
    auto result = test::run(command);
    EXPECT_EQ(result.status, 0) << command << "\n" << result.output;
    EXPECT_NE(result.output.find("noop-python"), std::string::npos) << command << "\n" << result.output;
    EXPECT_NE(result.output.find("caption_case_js"), std::string::npos) << command << "\n" << result.output;
  }
}

// The plugin written against docs/protocol.md alone, with no SDK, conforms.
TEST(PluginsCommand, CheckPassesThePluginWithNoSdk) {
  auto result = test::run((test::bin_dir() / "bulkhead").string() + " plugins check " +
                          test::test_plugin("raw-python").string());
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("conforms to protocol 2"), std::string::npos) << result.output;
}

// A reply out of schema: the table names the hook and the field, once per hook.
TEST(PluginsCommand, CheckNamesTheFieldOfAnOutOfSchemaReply) {
  fs::path dir = fresh_dir("out-of-schema");
  fs::create_directories(dir / "liar");
  std::ofstream(dir / "liar" / "plugin.json")
      << Json{{"name", "raw-fault"}, {"version", "1.0.0"}, {"description", "answers with the wrong types"},
              {"runtime", "exec"}, {"entry", test::test_plugin("raw-fault").string() + "/raw_fault.py"},
              {"hooks", {"transform_caption", "transform_pil_image"}}, {"options", {{"fault", "wrong_type"}}}}
             .dump();
  auto result = test::run((test::bin_dir() / "bulkhead").string() + " plugins check " + (dir / "liar").string() +
                          " 2>/dev/null");
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("transform_caption       FAIL"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("/caption: Value type not permitted by 'type' constraint. expected string, got integer."),
            std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("/image/width: Value type not permitted by 'type' constraint. expected integer, got string."),
            std::string::npos)
      << result.output;
  EXPECT_EQ(result.output.find("Failed to validate"), std::string::npos) << result.output;
}

TEST(PluginsCommand, CheckFailsAWrongPluginNamingTheHook) {
  fs::path dir = fresh_dir("wrong");
  fs::create_directories(dir / "thrower");
  std::ofstream(dir / "thrower" / "plugin.json")
      << Json{{"name", "thrower"}, {"version", "1.0.0"}, {"description", "fails its caption hook"}, {"runtime", "cpp"},
              {"entry", "libbulkhead_test_fault.so"}, {"hooks", {"transform_caption", "on_epoch_end"}},
              {"options", {{"fault", "throw"}, {"hooks", {"transform_caption"}}}}}
             .dump();
  auto result = test::run((test::bin_dir() / "bulkhead").string() + " plugins check " + (dir / "thrower").string());
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("transform_caption       FAIL"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("injected failure in transform_caption"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("on_epoch_end            pass"), std::string::npos) << result.output;
}

TEST(PluginsCommand, ListReportsBrokenManifestsAndDuplicateNamesWithoutHidingOthers) {
  fs::path dir = fresh_dir("list");
  fs::create_directories(dir / "broken");
  std::ofstream(dir / "broken" / "plugin.json") << R"({"name": "Broken Name", "version": "1"})";
  fs::create_directories(dir / "twin");
  std::ofstream(dir / "twin" / "plugin.json")
      << Json{{"name", "hook_logger"}, {"version", "1.0.0"}, {"description", "a twin"}, {"runtime", "cpp"},
              {"entry", "x.so"}, {"hooks", Json::array()}}
             .dump();
  auto result = test::run((test::bin_dir() / "bulkhead").string() + " plugins --plugins-dir " + dir.string() + " list");
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("caption_tag_shuffle"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find((dir / "broken" / "plugin.json").string()), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("/name"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("two plugins are named 'hook_logger'"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find((dir / "twin" / "plugin.json").string()), std::string::npos) << result.output;
}

}  // namespace
}  // namespace bulkhead
