#include "web/web_server.hpp"

#include <atomic>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <thread>

#include <httplib.h>

#include "common/log.hpp"
#include "common/paths.hpp"
#include "train/run_control.hpp"
#include "train/run_folder.hpp"
#include "web/event_stream.hpp"
#include "web/run_files.hpp"
#include "web/web_guard.hpp"

namespace bulkhead::web {
namespace fs = std::filesystem;
namespace {

// Each live page holds a connection (and a thread) for its event stream.
constexpr std::size_t kThreads = 16;
// How often a live stream looks at the run folder.
constexpr std::chrono::milliseconds kStreamEvery{500};
// How long a control request waits for the trainer's answer (it comes after the current step).
constexpr std::chrono::seconds kAnswerWait{20};

const std::map<std::string, std::string> kContentTypes = {{".html", "text/html; charset=utf-8"},
                                                          {".js", "text/javascript; charset=utf-8"},
                                                          {".css", "text/css; charset=utf-8"},
                                                          {".svg", "image/svg+xml"},
                                                          {".png", "image/png"}};

void send_json(httplib::Response& response, const Json& body, int status = 200) {
  response.status = status;
  response.set_content(body.dump(), "application/json");
}

void send_error(httplib::Response& response, int status, const std::string& message) {
  send_json(response, {{"error", message}}, status);
}

// The page's files: every file of the folder with a plain name and a known type, read at start.
std::map<std::string, fs::path> page_files(const fs::path& dir) {
  std::map<std::string, fs::path> files;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error))
    if (entry.is_regular_file() && kContentTypes.count(entry.path().extension().string()))
      files["/" + entry.path().filename().string()] = entry.path();
  if (!files.count("/index.html"))
    throw std::runtime_error("the web view's page is missing: no index.html in " + dir.string() +
                             " (set BULKHEAD_HOME to the folder that holds web/)");
  return files;
}

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

struct WebServer::Impl {
  WebOptions options;
  RunFiles files;
  Guard guard;
  std::map<std::string, fs::path> page;
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> stopping{false};
  int port = 0;
  std::shared_ptr<spdlog::logger> log = logger("web");

  explicit Impl(WebOptions o)
      : options(std::move(o)),
        files(options.runs, options.run),
        guard(options.host, options.port, options.token),
        page(page_files(options.static_dir.empty() ? paths::home() / "web" : options.static_dir)) {}

  // The folder of ?run= (or ?study=); answers 404 naming the id when there is none.
  std::optional<fs::path> folder(const httplib::Request& request, httplib::Response& response, const char* key) {
    const std::string id = request.get_param_value(key);
    auto dir = files.find(id);
    if (!dir) send_error(response, 404, std::string("no ") + key + " \"" + id + "\" under " + files.root().string());
    return dir;
  }

  void guard_every_request();
  void add_page_routes();
  void add_read_routes();
  void add_stream_route();
  void add_control_route();
  struct Reply {
    int status = 200;
    Json body;
  };
  Reply control(const Json& body);
};

void WebServer::Impl::guard_every_request() {
  // No page of this server in a frame (a click on a hidden "stop the run"), no token in a Referer.
  server.set_default_headers({{"X-Frame-Options", "DENY"},
                              {"Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"},
                              {"Referrer-Policy", "no-referrer"},
                              {"X-Content-Type-Options", "nosniff"},
                              {"Cache-Control", "no-store"}});
  server.set_pre_routing_handler([this](const httplib::Request& request, httplib::Response& response) {
    if (auto refusal = guard.check(request)) {
      log->warn("refused {} {} from {}: {}", request.method, request.path, request.remote_addr, refusal->reason);
      send_error(response, refusal->status, refusal->reason);
      return httplib::Server::HandlerResponse::Handled;
    }
    if (guard.token_in_url(request) && request.method == "GET" && request.path.rfind("/api/", 0) != 0) {
      // The token moves into a cookie, and out of the address bar and the history. Always to the
      // page itself: a path from the request ("//evil.example") could send the browser elsewhere.
      response.set_header("Set-Cookie", guard.cookie());
      response.set_redirect("/", 303);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
}

void WebServer::Impl::add_page_routes() {
  server.Get(R"(/[A-Za-z0-9_.-]*)", [this](const httplib::Request& request, httplib::Response& response) {
    const auto file = page.find(request.path == "/" ? "/index.html" : request.path);
    if (file == page.end()) return send_error(response, 404, "no page " + request.path);
    response.set_content(read_file(file->second), kContentTypes.at(file->second.extension().string()));
  });
}

void WebServer::Impl::add_read_routes() {
  server.Get("/api/session", [this](const httplib::Request&, httplib::Response& response) {
    send_json(response, {{"csrf_token", guard.csrf_token()},
                         {"run", options.run ? Json(files.list()["runs"][0]["id"]) : Json(nullptr)}});
  });
  server.Get("/api/runs", [this](const httplib::Request&, httplib::Response& response) { send_json(response, files.list()); });
  server.Get("/api/run", [this](const httplib::Request& request, httplib::Response& response) {
    if (auto dir = folder(request, response, "run")) send_json(response, files.run(*dir));
  });
  server.Get("/api/metrics", [this](const httplib::Request& request, httplib::Response& response) {
    const auto dir = folder(request, response, "run");
    if (!dir) return;
    std::int64_t since = 0;
    try {
      if (request.has_param("since")) since = std::stoll(request.get_param_value("since"));
    } catch (const std::exception&) {
      return send_error(response, 400, "since=\"" + request.get_param_value("since") + "\" is not a step number");
    }
    send_json(response, {{"records", files.metrics(*dir, since).records}});
  });
  server.Get("/api/samples", [this](const httplib::Request& request, httplib::Response& response) {
    if (auto dir = folder(request, response, "run")) send_json(response, files.samples(*dir));
  });
  server.Get("/api/sample", [this](const httplib::Request& request, httplib::Response& response) {
    const auto dir = folder(request, response, "run");
    if (!dir) return;
    const auto file = files.sample_file(*dir, request.get_param_value("name"));
    if (!file) return send_error(response, 404, "no sample \"" + request.get_param_value("name") + "\" in this run");
    response.set_content(read_file(*file), "image/png");
    response.headers.erase("Cache-Control");  // the default no-store: a sample never changes
    response.set_header("Cache-Control", "private, max-age=86400");
  });
  server.Get("/api/plugins", [this](const httplib::Request& request, httplib::Response& response) {
    if (auto dir = folder(request, response, "run")) send_json(response, files.plugins(*dir));
  });
  server.Get("/api/study", [this](const httplib::Request& request, httplib::Response& response) {
    const auto dir = folder(request, response, "study");
    if (!dir) return;
    if (!files.is_study(*dir)) return send_error(response, 404, request.get_param_value("study") + " is a run, not a study");
    send_json(response, files.study(*dir));
  });
}

void WebServer::Impl::add_stream_route() {
  server.Get("/api/events", [this](const httplib::Request& request, httplib::Response& response) {
    const bool study = request.has_param("study");
    const auto dir = folder(request, response, study ? "study" : "run");
    if (!dir) return;
    std::int64_t since = 0;
    if (request.has_param("since")) since = std::atoll(request.get_param_value("since").c_str());
    auto stream = std::make_shared<EventStream>(files, *dir, study ? EventStream::Kind::study : EventStream::Kind::run, since);
    response.set_header("X-Accel-Buffering", "no");
    response.set_chunked_content_provider("text/event-stream", [this, stream, first = true](std::size_t, httplib::DataSink& sink) mutable {
      for (auto waited = std::chrono::milliseconds(0); !first && waited < kStreamEvery; waited += std::chrono::milliseconds(50)) {
        if (stopping) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      first = false;
      return !stopping && stream->pump(sink);
    });
  });
}

// {"run", "action": "restart_plugin" | "stop_plugin" | "save_checkpoint" | "stop_run", "plugin", "fresh"}:
// posted as `bulkhead plugins restart` and the others post it, then the trainer's answer.
WebServer::Impl::Reply WebServer::Impl::control(const Json& body) {
  auto refuse = [](int status, const std::string& message) { return Reply{status, {{"error", message}}}; };
  if (!body.is_object()) return refuse(400, "the body is not a JSON object");
  const std::string id = body.value("run", "");
  const auto dir = files.find(id);
  if (!dir || files.is_study(*dir)) return refuse(404, "no run \"" + id + "\" under " + files.root().string());
  const auto action = run_control::action_named(body.value("action", ""));
  if (!action)
    return refuse(400, "action \"" + body.value("action", "") + "\" is none of restart_plugin, stop_plugin, save_checkpoint, stop_run");
  if (!RunFolder::in_use(*dir)) return refuse(409, "run \"" + id + "\" is not training: no trainer would take the request");
  const run_control::Request request{*action, body.value("plugin", ""), !body.value("fresh", false)};
  try {
    run_control::post(*dir, request);
  } catch (const std::exception& e) {
    return refuse(400, e.what());
  }
  log->info("{} posted for run {}{}", run_control::action_name(*action), id, request.plugin.empty() ? "" : " (" + request.plugin + ")");
  const auto answer = run_control::await_answer(*dir, request, kAnswerWait);
  if (!answer) return refuse(504, "no answer from the trainer within 20 s; the request stays, it takes it at its next step");
  return {answer->ok ? 200 : 409, {{"ok", answer->ok}, {"message", answer->message}}};
}

void WebServer::Impl::add_control_route() {
  server.Post("/api/control", [this](const httplib::Request& request, httplib::Response& response) {
    const Reply reply = control(Json::parse(request.body, nullptr, /*allow_exceptions=*/false));
    send_json(response, reply.body, reply.status);
  });
}

WebServer::WebServer(WebOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  auto& i = *impl_;
  i.server.new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  i.guard_every_request();
  i.add_page_routes();
  i.add_read_routes();
  i.add_stream_route();
  i.add_control_route();
  const std::string where = i.options.host + ":" + std::to_string(i.options.port);
  i.port = i.options.port == 0 ? i.server.bind_to_any_port(i.options.host)
                               : (i.server.bind_to_port(i.options.host, i.options.port) ? i.options.port : -1);
  if (i.port <= 0)
    throw std::runtime_error("the web view cannot listen on " + where + " (is the port taken? choose another with --port)");
  if (i.options.port == 0) i.guard = Guard(i.options.host, i.port, i.guard.token());  // the port it got is in the Host
  if (i.options.host != "127.0.0.1" && i.options.host != "localhost" && i.options.host != "::1")
    i.log->warn("the web view listens on {}, not only on this machine: anyone who can reach it and has the token can "
                "steer the run, and plain HTTP carries the token in clear text", i.options.host);
  i.thread = std::thread([&i] { i.server.listen_after_bind(); });
  i.log->info("web view on http://{}:{}/ (the token is printed on the console)", i.options.host, i.port);
}

WebServer::~WebServer() { stop(); }

void WebServer::stop() {
  if (impl_->stopping.exchange(true)) return;
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::string WebServer::url() const {
  std::string host = impl_->options.host == "0.0.0.0" || impl_->options.host == "::" ? "127.0.0.1" : impl_->options.host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(impl_->port) + "/?token=" + impl_->guard.token();
}

int WebServer::port() const { return impl_->port; }

}  // namespace bulkhead::web
