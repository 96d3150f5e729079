// The web view's API and its guard over a real socket, served by the real `bulkhead train --web`
// (and `bulkhead serve`) about a real training run; and the control commands of the CLI.
#include <csignal>
#include <regex>

#include <httplib.h>

#include "trainer/test_support.hpp"

namespace bulkhead::testing {
namespace {

// A benchmark-paced training (no model compute: cheap on a busy machine) with one C++ plugin,
// long enough to outlive its test, served on a free port.
Json paced_config(const fs::path& run_dir, int max_epochs = 1000) {
  Json config = tiny_config(run_dir, max_epochs);
  config["bench_pace_ms"] = 10;
  config["plugins"] = {"caption_tag_shuffle"};
  return config;
}

// The URL that `bulkhead ... --web` / `bulkhead serve` prints: its port and token.
struct Printed {
  int port = 0;
  std::string token;
};

std::optional<Printed> printed_url(const fs::path& output) {
  static const std::regex url(R"(web view: http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]+))");
  std::smatch match;
  const std::string text = read_text(output);
  if (!std::regex_search(text, match, url)) return std::nullopt;
  return Printed{std::stoi(match[1]), match[2]};
}

// A bulkhead process serving the web view; SIGINT at the end if it still runs.
class Served {
 public:
  Served(const std::vector<std::string>& args, const fs::path& output) : output_(output), pid_(start_bulkhead(args, output)) {
    std::optional<Printed> url;
    EXPECT_TRUE(wait_until([&] { return (url = printed_url(output)).has_value(); })) << read_text(output);
    if (url) url_ = *url;
  }
  ~Served() {
    if (pid_ > 0) {
      kill(pid_, SIGINT);
      wait_exit(pid_);
    }
  }
  int exit_status() { return wait_exit(std::exchange(pid_, -1)); }

  httplib::Client client() const {
    httplib::Client client("127.0.0.1", url_.port);
    client.set_read_timeout(30, 0);
    return client;
  }
  httplib::Headers auth(httplib::Headers more = {}) const {
    more.emplace("Authorization", "Bearer " + url_.token);
    return more;
  }
  std::string csrf() const {
    auto response = client().Get("/api/session", auth());
    return response && response->status == 200 ? Json::parse(response->body)["csrf_token"].get<std::string>() : "";
  }
  Json get(const std::string& path) const {
    auto response = client().Get(path.c_str(), auth());
    EXPECT_TRUE(response && response->status == 200) << path << ": " << (response ? response->body : "no answer");
    return response ? Json::parse(response->body, nullptr, false) : Json();
  }
  httplib::Result control(const Json& body) const {
    return client().Post("/api/control", auth({{"X-CSRF-Token", csrf()}}), body.dump(), "application/json");
  }
  const Printed& url() const { return url_; }
  const fs::path& output() const { return output_; }

 private:
  fs::path output_;
  pid_t pid_;
  Printed url_;
};

// `bulkhead train --config DIR/train.json --web 0` on a paced run in DIR/run.
std::unique_ptr<Served> train_with_web(const fs::path& dir, const Json& config) {
  std::ofstream(dir / "train.json") << config.dump();
  auto served = std::make_unique<Served>(std::vector<std::string>{"train", "--config", (dir / "train.json").string(), "--web", "0"},
                                         dir / "output.txt");
  EXPECT_TRUE(wait_until([&] { return read_metrics(dir / "run").size() >= 3; })) << read_text(dir / "output.txt");
  return served;
}

// One counter ("calls", "crashes", ...) summed over a plugin's hooks.
long summed(const Json& plugin, const std::string& counter) {
  long total = 0;
  for (const auto& [hook, counters] : plugin["hooks"].items()) total += counters.value(counter, 0L);
  return total;
}

long live_reloads(const fs::path& run_dir) { return read_json(run_dir / "plugin-report.live.json")["plugins"][0].value("reloads", 0L); }

TEST(WebApi, WithoutTheTokenEveryRequestIs401) {
  const auto dir = scratch("web");
  const auto web = train_with_web(dir, paced_config(dir / "run"));
  auto client = web->client();
  for (const char* path : {"/", "/api/runs", "/api/session", "/api/metrics?run=run", "/app.js"})
    EXPECT_EQ(client.Get(path)->status, 401) << path;
  EXPECT_EQ(client.Get("/api/runs", {{"Authorization", "Bearer " + std::string(48, '0')}})->status, 401);
  EXPECT_EQ(client.Get("/api/runs", {{"Cookie", "bulkhead_token=wrong"}})->status, 401);
  EXPECT_EQ(client.Post("/api/control", R"({"run":"run","action":"stop_run"})", "application/json")->status, 401);

  // The printed URL once: the token moves into a cookie the page cannot read, sent to this site only.
  auto first = client.Get(("/?token=" + web->url().token).c_str());
  ASSERT_EQ(first->status, 303);
  EXPECT_EQ(first->get_header_value("Location"), "/");
  const std::string cookie = first->get_header_value("Set-Cookie");
  EXPECT_NE(cookie.find("HttpOnly"), std::string::npos) << cookie;
  EXPECT_NE(cookie.find("SameSite=Strict"), std::string::npos) << cookie;
  EXPECT_EQ(client.Get(("//evil.example/?token=" + web->url().token).c_str())->get_header_value("Location"), "/");
  auto page = client.Get("/", {{"Cookie", cookie.substr(0, cookie.find(';'))}});
  ASSERT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<title>Bulkhead</title>"), std::string::npos);
  EXPECT_EQ(page->get_header_value("X-Frame-Options"), "DENY");  // no page of it inside another site's frame
  EXPECT_EQ(client.Get("/api/runs", web->auth())->status, 200);
}

// DNS rebinding: a page of evil.example whose name resolves to 127.0.0.1 sends its own Host.
TEST(WebApi, AHostThatIsNotTheServersIsRefused) {
  const auto dir = scratch("web");
  const auto web = train_with_web(dir, paced_config(dir / "run"));
  const std::string port = std::to_string(web->url().port);
  auto client = web->client();
  for (const std::string& host : std::vector<std::string>{"evil.example:" + port, "evil.example", "127.0.0.1:1", "localhost.evil.example:" + port}) {
    auto response = client.Get("/api/runs", web->auth({{"Host", host}}));
    EXPECT_EQ(response->status, 403) << host;
    EXPECT_NE(response->body.find("is not this server's name"), std::string::npos) << response->body;
  }
  for (const std::string& host : std::vector<std::string>{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST:" + port})
    EXPECT_EQ(client.Get("/api/runs", web->auth({{"Host", host}}))->status, 200) << host;
}

TEST(WebApi, AControlWithoutTheCsrfTokenOrFromAnotherOriginIsRefused) {
  const auto dir = scratch("web");
  const auto web = train_with_web(dir, paced_config(dir / "run"));
  auto client = web->client();
  const std::string body = Json{{"run", "run"}, {"action", "save_checkpoint"}}.dump();
  auto no_csrf = client.Post("/api/control", web->auth(), body, "application/json");
  EXPECT_EQ(no_csrf->status, 403);
  EXPECT_NE(no_csrf->body.find("X-CSRF-Token"), std::string::npos) << no_csrf->body;
  const std::string csrf = web->csrf();
  ASSERT_FALSE(csrf.empty());
  EXPECT_EQ(client.Post("/api/control", web->auth({{"X-CSRF-Token", "0" + csrf.substr(1)}}), body, "application/json")->status, 403);
  auto cross_site = client.Post("/api/control", web->auth({{"X-CSRF-Token", csrf}, {"Origin", "http://evil.example"}}), body, "application/json");
  EXPECT_EQ(cross_site->status, 403);
  EXPECT_NE(cross_site->body.find("cross-site"), std::string::npos) << cross_site->body;
  EXPECT_FALSE(fs::exists(dir / "run" / "control" / "save")) << "a refused request reached the trainer";

  const std::string origin = "http://127.0.0.1:" + std::to_string(web->url().port);
  auto accepted = client.Post("/api/control", web->auth({{"X-CSRF-Token", csrf}, {"Origin", origin}}), body, "application/json");
  ASSERT_EQ(accepted->status, 200) << accepted->body;
  EXPECT_TRUE(Json::parse(accepted->body)["ok"].get<bool>());
  EXPECT_TRUE(wait_until([&] {
    for (const auto& entry : fs::directory_iterator(dir / "run" / "checkpoints"))
      if (entry.path().filename().string().rfind("requested-", 0) == 0) return true;
    return false;
  })) << "no requested checkpoint was saved";
}

TEST(WebApi, MetricsSinceAStep) {
  const auto dir = scratch("web");
  const auto web = train_with_web(dir, paced_config(dir / "run"));
  ASSERT_TRUE(wait_until([&] { return read_metrics(dir / "run").size() >= 40; }));
  const Json records = web->get("/api/metrics?run=run&since=20")["records"];
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records[0]["step"], 20) << records[0].dump();
  for (const auto& record : records) EXPECT_GE(record["step"].get<long>(), 20) << record.dump();
  // Step records and epoch records (val_loss, epoch_s) alike, in the file's order.
  long steps = 0;
  for (const auto& record : records) steps += record.contains("loss");
  EXPECT_GE(steps, 20);
  EXPECT_EQ(web->get("/api/metrics?run=run")["records"][0]["step"], 0);

  auto bad = web->client().Get("/api/metrics?run=run&since=twenty", web->auth());
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("twenty"), std::string::npos) << bad->body;
}

TEST(WebApi, ThePluginsTableIsLiveAndItsButtonsActOnTheTrainer) {
  const auto dir = scratch("web");
  const auto web = train_with_web(dir, paced_config(dir / "run"));
  // Rewritten every 2 s: the calls made so far show up in it.
  Json plugin;
  EXPECT_TRUE(wait_until([&] { return summed(plugin = web->get("/api/plugins?run=run")["plugins"][0], "calls") > 0; }))
      << plugin.dump(2);
  EXPECT_EQ(plugin["name"], "caption_tag_shuffle");
  EXPECT_EQ(plugin["status"], "running");
  EXPECT_EQ(plugin["reloads"], 0);

  auto restart = web->control({{"run", "run"}, {"action", "restart_plugin"}, {"plugin", "caption_tag_shuffle"}});
  ASSERT_EQ(restart->status, 200) << restart->body;
  EXPECT_EQ(Json::parse(restart->body)["message"].get<std::string>().rfind("restarted caption_tag_shuffle at step ", 0), 0u)
      << restart->body;
  EXPECT_TRUE(wait_until([&] { return live_reloads(dir / "run") == 1; })) << "the live report never counted the restart";
  EXPECT_EQ(web->get("/api/plugins?run=run")["plugins"][0]["reloads"], 1);

  auto stop = web->control({{"run", "run"}, {"action", "stop_plugin"}, {"plugin", "caption_tag_shuffle"}});
  ASSERT_EQ(stop->status, 200) << stop->body;
  EXPECT_TRUE(wait_until([&] { return web->get("/api/plugins?run=run")["plugins"][0]["status"] == "stopped"; }));

  auto unknown = web->control({{"run", "run"}, {"action", "restart_plugin"}, {"plugin", "nosuch"}});
  EXPECT_EQ(unknown->status, 409);
  EXPECT_NE(unknown->body.find("no plugin named nosuch"), std::string::npos) << unknown->body;
  auto bad_action = web->control({{"run", "run"}, {"action", "explode"}});
  EXPECT_EQ(bad_action->status, 400);
  EXPECT_NE(bad_action->body.find("explode"), std::string::npos) << bad_action->body;
}

TEST(WebApi, StopTheRunEndsItLikeAFinishedOne) {
  const auto dir = scratch("web");
  auto web = train_with_web(dir, paced_config(dir / "run"));
  auto stop = web->control({{"run", "run"}, {"action", "stop_run"}});
  ASSERT_EQ(stop->status, 200) << stop->body;
  EXPECT_EQ(web->exit_status(), 0) << read_text(dir / "output.txt");
  EXPECT_EQ(fs::path(read_text(dir / "run" / "checkpoints" / "latest.txt")).filename().string().rfind("final-", 0), 0u);
  EXPECT_EQ(plugin_report_of(dir / "run", "caption_tag_shuffle")["status"], "ended");
  EXPECT_EQ(read_json(dir / "run" / "plugin-report.live.json")["plugins"], read_json(dir / "run" / "plugin-report.json")["plugins"]);
}

TEST(WebApi, OnlyRunsInsideTheRootCanBeNamed) {
  const auto dir = scratch("web");
  const auto web = train_with_web(dir, paced_config(dir / "run"));
  auto client = web->client();
  for (const char* path : {"/api/run?run=../run", "/api/run?run=/etc", "/api/metrics?run=nosuch", "/api/samples?run=",
                           "/api/sample?run=run&name=../config.json", "/api/sample?run=run&name=..%2F..%2Ftrain.json",
                           "/api/study?study=run", "/../train.json", "/index.html/../../train.json"}) {
    auto response = client.Get(path, web->auth());
    EXPECT_TRUE(response->status == 404 || response->status == 400) << path << ": " << response->status << " " << response->body;
  }
  auto missing = client.Get("/api/run?run=nosuch", web->auth());
  EXPECT_EQ(Json::parse(missing->body)["error"].get<std::string>().rfind("no run \"nosuch\" under ", 0), 0u) << missing->body;
  const Json all = web->get("/api/runs");
  ASSERT_EQ(all["runs"].size(), 1u) << all.dump();  // train --web serves its own run only
  EXPECT_EQ(all["runs"][0]["status"], "training");
}

TEST(WebApi, TheEventStreamSendsNewRecordsAsTheyCome) {
  const auto dir = scratch("web");
  const auto web = train_with_web(dir, paced_config(dir / "run"));
  std::string received;
  std::set<long> steps;
  auto client = web->client();
  client.Get("/api/events?run=run&since=5", web->auth(), [&](const char* data, std::size_t size) {
    received.append(data, size);
    for (std::size_t end; (end = received.find("\n\n")) != std::string::npos; received.erase(0, end + 2)) {
      const std::string event = received.substr(0, end);
      if (event.rfind("event: metrics\ndata: ", 0) != 0) continue;
      for (const auto& record : Json::parse(event.substr(event.find("data: ") + 6))) steps.insert(record["step"].get<long>());
    }
    return steps.size() < 60;  // enough: more than the file held when the stream began
  });
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(*steps.begin(), 5);
  EXPECT_GE(steps.size(), 60u);
}

TEST(RunControl, TheCliSavesStopsAPluginAndStopsTheRun) {
  const auto dir = scratch("cli");
  const auto web = train_with_web(dir, paced_config(dir / "run"));
  const std::string run = (dir / "run").string();
  EXPECT_EQ(run_bulkhead({"run", "save", "--run", run}, dir / "save.txt"), 0) << read_text(dir / "save.txt");
  EXPECT_NE(read_text(dir / "save.txt").find("a checkpoint will be saved"), std::string::npos) << read_text(dir / "save.txt");
  EXPECT_EQ(run_bulkhead({"plugins", "stop", "caption_tag_shuffle", "--run", run}, dir / "stop-plugin.txt"), 0)
      << read_text(dir / "stop-plugin.txt");
  EXPECT_EQ(run_bulkhead({"plugins", "stop", "nosuch", "--run", run}, dir / "stop-nosuch.txt"), 1);
  EXPECT_NE(read_text(dir / "stop-nosuch.txt").find("no plugin named nosuch"), std::string::npos);
  EXPECT_EQ(run_bulkhead({"plugins", "stop", "../x", "--run", run}, dir / "bad-name.txt"), 2);
  EXPECT_EQ(run_bulkhead({"run", "stop", "--run", run}, dir / "stop.txt"), 0) << read_text(dir / "stop.txt");
  EXPECT_EQ(web->exit_status(), 0) << read_text(dir / "output.txt");

  const Json plugin = plugin_report_of(dir / "run", "caption_tag_shuffle");
  EXPECT_EQ(plugin["status"], "stopped") << plugin.dump(2);
  EXPECT_EQ(plugin["quarantine_reason"].get<std::string>().rfind("stopped by the user at step ", 0), 0u) << plugin.dump(2);
  EXPECT_GT(summed(plugin, "calls"), 0) << plugin.dump(2);
  EXPECT_EQ(summed(plugin, "crashes") + summed(plugin, "timeouts") + summed(plugin, "errors"), 0);  // off without a fault
  bool requested = false;
  for (const auto& entry : fs::directory_iterator(dir / "run" / "checkpoints"))
    requested |= entry.path().filename().string().rfind("requested-", 0) == 0;
  EXPECT_TRUE(requested);
  EXPECT_NE(read_text(dir / "run" / "train.log").find("STOPPED"), std::string::npos);
}

TEST(Serve, ListsTheRunsUnderItsFolderAndWarnsBeyondThisMachine) {
  const auto dir = scratch("serve");
  std::ofstream(dir / "train.json") << paced_config(dir / "runs" / "short", 1).dump();
  ASSERT_EQ(run_bulkhead({"train", "--config", (dir / "train.json").string()}, dir / "train.txt"), 0) << read_text(dir / "train.txt");
  Served web({"serve", "--runs", (dir / "runs").string(), "--port", "0"}, dir / "serve.txt");
  const Json all = web.get("/api/runs");
  ASSERT_EQ(all["runs"].size(), 1u) << all.dump();
  EXPECT_EQ(all["runs"][0]["id"], "short");
  EXPECT_EQ(all["runs"][0]["status"], "finished");
  EXPECT_FALSE(all["runs"][0]["live"].get<bool>());
  auto finished = web.control({{"run", "short"}, {"action", "save_checkpoint"}});
  EXPECT_EQ(finished->status, 409);
  EXPECT_NE(finished->body.find("is not training"), std::string::npos) << finished->body;
  EXPECT_EQ(read_text(dir / "serve.txt").find("warning"), std::string::npos) << read_text(dir / "serve.txt");

  Served everywhere({"serve", "--runs", (dir / "runs").string(), "--port", "0", "--host", "0.0.0.0"}, dir / "everywhere.txt");
  EXPECT_NE(read_text(dir / "everywhere.txt").find("listens on 0.0.0.0, not only on this machine"), std::string::npos)
      << read_text(dir / "everywhere.txt");
  EXPECT_EQ(run_bulkhead({"serve", "--runs", (dir / "nosuch").string()}, dir / "nosuch.txt"), 2);
}

}  // namespace
}  // namespace bulkhead::testing
