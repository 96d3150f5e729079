#include "runtime_exec.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <vector>

#include <bulkhead/heap.hpp>

namespace bulkhead::host {
namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

}  // namespace

int exec_runtime(const std::string& runtime, const std::string& entry, const std::string& plugin_dir) {
  const std::string home = env_or("BULKHEAD_HOME", BULKHEAD_SOURCE_DIR);
  setenv("BULKHEAD_ENTRY", entry.c_str(), 1);
  setenv("BULKHEAD_PLUGIN_DIR", plugin_dir.c_str(), 1);
  setenv("GLIBC_TUNABLES", kHeapTunables, 1);
  std::vector<std::string> argv;
  if (runtime == "python") {
    // Debian's interpreter, which has zmq, msgpack and PIL; never whichever python3 is first on PATH.
    argv = {env_or("BULKHEAD_PYTHON", "/usr/bin/python3"), "-m", "bulkhead_plugin.host"};
    setenv("PYTHONPATH", (home + "/plugin-sdk/python").c_str(), 1);
    setenv("PYTHONUNBUFFERED", "1", 1);
  } else if (runtime == "node") {
    argv = {env_or("BULKHEAD_NODE", "/usr/bin/node"), home + "/plugin-sdk/node/host.js"};
    setenv("NODE_PATH", (home + "/plugin-sdk/node/node_modules").c_str(), 1);
  } else if (runtime == "exec") {
    argv = {entry.front() == '/' ? entry : plugin_dir + "/" + entry};
  } else {
    std::cerr << "bulkhead-plugin-host: unknown runtime '" << runtime << "' (cpp, python, node or exec)" << std::endl;
    return 78;
  }
  std::vector<char*> raw;
  for (auto& arg : argv) raw.push_back(arg.data());
  raw.push_back(nullptr);
  execv(raw[0], raw.data());
  std::cerr << "bulkhead-plugin-host: cannot run " << argv[0] << ": " << std::strerror(errno) << std::endl;
  return 78;
}

}  // namespace bulkhead::host
