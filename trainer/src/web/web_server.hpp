// web_server.hpp — the live web view of runs and studies (docs/web.md).
//
//   web::WebOptions options;                     // bulkhead serve: every run and study under runs/
//   options.run = trainer.run_dir();             // bulkhead train --web: the run being trained
//   web::WebServer server(options);
//   std::cout << server.url();                   // http://127.0.0.1:8585/?token=...: open it once
//
// A small HTTP server (cpp-httplib) on its own threads: the static page in web/, a JSON API under
// /api/ read from the run folders (run_files.hpp), live updates as Server-Sent Events, and the
// control buttons, which post the same requests as `bulkhead plugins restart|stop` and
// `bulkhead run save|stop` (train/run_control.hpp). Every request passes the Guard (web_guard.hpp).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace bulkhead::web {

struct WebOptions {
  std::filesystem::path runs = "runs";          // every run and study under this folder
  std::optional<std::filesystem::path> run;     // or this one run alone
  std::string host = "127.0.0.1";               // "0.0.0.0": every interface (a warning says so)
  int port = kDefaultPort;                      // 0: any free port (port() says which)
  std::filesystem::path static_dir;             // the page; empty: web/ of Bulkhead's home (paths.hpp)
  std::string token;                            // empty: a random one

  static constexpr int kDefaultPort = 8585;
};

class WebServer {
 public:
  // Binds and serves in the background. Throws std::runtime_error naming the address when it
  // cannot listen there (the port taken), or naming the folder when the page is missing.
  explicit WebServer(WebOptions options);
  ~WebServer();  // stop()
  WebServer(const WebServer&) = delete;
  WebServer& operator=(const WebServer&) = delete;

  // The address to open, with the token: http://127.0.0.1:8585/?token=...
  std::string url() const;
  int port() const;
  // Ends the live streams and stops listening; safe to call twice.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulkhead::web
