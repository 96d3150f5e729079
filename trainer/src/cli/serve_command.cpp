// bulkhead serve [--runs DIR] [--port P] [--host ADDR]: the web view of every run and study under DIR.
#include <pthread.h>

#include <csignal>
#include <cstring>

#include "cli/commands.hpp"
#include "common/log.hpp"
#include "web/web_server.hpp"

namespace bulkhead {

void add_serve_command(CLI::App& app) {
  static web::WebOptions options;
  auto* serve = app.add_subcommand("serve", "Serve the live web view of every run and study under a folder (docs/web.md)");
  serve->add_option("--runs", options.runs, "The folder of runs and studies (default runs; or one run folder)")
      ->check(CLI::ExistingDirectory);
  serve->add_option("--port", options.port, "Port (default " + std::to_string(options.port) + "; 0: any free one)");
  serve->add_option("--host", options.host,
                    "Address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface, with a warning)");
  serve->callback([] {
    // Blocked here, so that every thread the server starts inherits it: sigwait below takes them.
    sigset_t stop;
    sigemptyset(&stop);
    for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop, signal);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    try {
      web::WebServer server(options);
      print_web_url(server);
      int signal = 0;
      sigwait(&stop, &signal);
      logger("web")->info("stopping ({})", strsignal(signal));
    } catch (const std::exception& e) {
      logger("web")->error("{}", e.what());
      throw CLI::RuntimeError(2);
    }
  });
}

}  // namespace bulkhead
