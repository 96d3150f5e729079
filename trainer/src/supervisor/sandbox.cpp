#include "supervisor/sandbox.hpp"

#include <glob.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <stdexcept>

extern char** environ;

namespace bulkhead {
namespace fs = std::filesystem;

JailSettings JailSettings::from_json(const Json& jail) {
  JailSettings settings;
  if (!jail.is_object()) return settings;
  settings.mode = jail.value("mode", "full") == "weak" ? Mode::weak : Mode::full;
  settings.user = jail.value("user", settings.user);
  return settings;
}

Permissions Permissions::from_json(const Json& permissions, const fs::path& relative_to) {
  Permissions p;
  if (!permissions.is_object()) return p;
  auto paths = [&](const char* key) {
    std::vector<fs::path> out;
    for (const auto& item : permissions.value(key, Json::array())) {
      fs::path path = item.get<std::string>();
      out.push_back((path.is_relative() && !relative_to.empty() ? relative_to / path : path).lexically_normal());
    }
    return out;
  };
  p.read = paths("read");
  p.write = paths("write");
  p.network = permissions.value("network", false);
  p.gpu = permissions.value("gpu", false);
  p.env = permissions.value("env", std::vector<std::string>{});
  p.model_access = permissions.value("model_access", std::map<std::string, std::vector<std::string>>{});
  return p;
}

bool Permissions::empty() const {
  return read.empty() && write.empty() && !network && !gpu && env.empty() && model_access.empty();
}

namespace {

std::vector<std::string> items(const Permissions& p) {
  std::vector<std::string> out;
  for (const auto& path : p.read) out.push_back("read " + path.string());
  for (const auto& path : p.write) out.push_back("write " + path.string());
  if (p.network) out.push_back("network");
  if (p.gpu) out.push_back("gpu");
  for (const auto& name : p.env) out.push_back("env " + name);
  // One item per parameter pattern and mode: a grant must name the same pattern with each mode.
  for (const auto& [pattern, modes] : p.model_access)
    for (const auto& mode : modes) out.push_back("model " + pattern + " " + mode);
  return out;
}

}  // namespace

std::string Permissions::describe() const {
  std::string text;
  for (const auto& item : items(*this)) text += (text.empty() ? "" : ", ") + item;
  return text.empty() ? "none" : text;
}

Json Permissions::to_json() const {
  Json json = Json::object();
  auto strings = [](const std::vector<fs::path>& paths) {
    std::vector<std::string> out;
    for (const auto& path : paths) out.push_back(path.string());
    return out;
  };
  if (!read.empty()) json["read"] = strings(read);
  if (!write.empty()) json["write"] = strings(write);
  if (network) json["network"] = true;
  if (gpu) json["gpu"] = true;
  if (!env.empty()) json["env"] = env;
  if (!model_access.empty()) json["model_access"] = model_access;
  return json;
}

std::string ungranted(const std::string& plugin, const fs::path& manifest, const Permissions& asked, const Permissions& granted,
                      const std::string& config_file) {
  const auto have = items(granted);
  std::string missing;
  for (const auto& item : items(asked))
    if (std::find(have.begin(), have.end(), item) == have.end()) missing += (missing.empty() ? "" : ", ") + item;
  if (missing.empty()) return "";
  return "plugin '" + plugin + "' (" + manifest.string() + ") asks for " + missing + ", which its entry in " + config_file +
         " does not grant; if you trust it with that, write the entry as {\"name\": \"" + plugin +
         "\", \"grant\": " + asked.to_json().dump() + "} (docs/sandbox.md)";
}

PluginIdentity plugin_identity(const JailSettings& jail) {
  if (getuid() != 0) return {};
  const std::string& user = jail.user;
  const passwd* entry = std::all_of(user.begin(), user.end(), ::isdigit) ? getpwuid(uid_t(std::stoul(user))) : getpwnam(user.c_str());
  if (entry == nullptr) {
    if (std::all_of(user.begin(), user.end(), ::isdigit)) return {std::stoi(user), std::stoi(user)};  // a uid of no account
    throw std::runtime_error("jail.user: no user named '" + user + "' on this machine");
  }
  if (entry->pw_uid == 0) throw std::runtime_error("jail.user: '" + user + "' is root; plugins must run as an unprivileged user");
  return {int(entry->pw_uid), int(entry->pw_gid)};
}

namespace {

// The system's shared libraries and the runtimes' own files, without the rest of /etc.
constexpr const char* kSystemFiles[] = {
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime",
    "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/ssl/openssl.cnf", "/sys/devices/system/cpu",
};
constexpr const char* kNetworkFiles[] = {
    "/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/gai.conf", "/etc/ssl", "/etc/ca-certificates",
};
// Debian's merged /usr: these are links into it; elsewhere they are folders of their own.
constexpr const char* kTopLevelLinks[] = {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"};

std::vector<std::string> matches(const std::string& pattern) {
  std::vector<std::string> found;
  glob_t result{};
  if (glob(pattern.c_str(), 0, nullptr, &result) == 0)
    for (size_t i = 0; i < result.gl_pathc; ++i) found.push_back(result.gl_pathv[i]);
  globfree(&result);
  return found;
}

std::string bubblewrap() {
  if (fs::exists("/usr/bin/bwrap")) return "/usr/bin/bwrap";
  return "bwrap";
}

}  // namespace

std::vector<std::string> jail_command(const JailView& view, const std::vector<std::string>& host_argv) {
  std::vector<std::string> argv = {bubblewrap(), "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                                   "--unshare-cgroup-try", "--hostname", "bulkhead-plugin"};
  auto add = [&](std::initializer_list<std::string> words) { argv.insert(argv.end(), words); };
  // The folders above bound paths, which bubblewrap would otherwise make 0700 (root's own, when it
  // runs privileged): the plugin's user could not reach what is bound inside.
  auto make_parents = [&](const std::vector<fs::path>& paths) {
    std::set<fs::path> parents;
    for (const auto& path : paths)
      for (fs::path p = path.parent_path(); p != p.root_path() && !p.empty(); p = p.parent_path()) parents.insert(p);
    for (const auto& parent : parents) add({"--perms", "0755", "--dir", parent.string()});
  };
  // An unprivileged trainer gets its namespaces through a user namespace; a root one keeps bwrap
  // privileged, and the host turns itself into the plugin user (plugin-host/src/jail.hpp).
  if (getuid() != 0) add({"--unshare-user", "--disable-userns"});
  if (!view.network) add({"--unshare-net"});

  std::vector<fs::path> system(std::begin(kSystemFiles), std::end(kSystemFiles));
  for (const auto& python_etc : matches("/etc/python3*")) system.push_back(python_etc);
  if (view.network) system.insert(system.end(), std::begin(kNetworkFiles), std::end(kNetworkFiles));
  make_parents(system);
  add({"--ro-bind", "/usr", "/usr"});
  for (const char* top : kTopLevelLinks) {
    std::error_code error;
    if (fs::is_symlink(top, error))
      add({"--symlink", fs::read_symlink(top, error).string(), top});
    else if (fs::is_directory(top, error))
      add({"--ro-bind", top, top});
  }
  for (const auto& file : system) add({"--ro-bind-try", file.string(), file.string()});

  const std::string size = std::to_string(std::int64_t(view.tmp_mb) << 20);
  add({"--proc", "/proc", "--dev", "/dev"});
  add({"--perms", "1777", "--size", size, "--tmpfs", "/tmp"});
  if (view.scratch.empty())
    add({"--perms", "1777", "--size", size, "--tmpfs", kJailScratchDir.string()});
  else
    add({"--bind", view.scratch.string(), kJailScratchDir.string()});
  if (view.gpu) {
    for (const auto& device : matches("/dev/nvidia*")) add({"--dev-bind", device, device});
    add({"--dev-bind-try", "/dev/dri", "/dev/dri", "--ro-bind-try", "/sys", "/sys"});
  }

  std::vector<fs::path> bound = view.read_only;
  bound.insert(bound.end(), view.writable.begin(), view.writable.end());
  bound.push_back(kJailSocketDir);
  make_parents(bound);
  for (const auto& path : view.read_only) add({"--ro-bind", path.string(), path.string()});
  for (const auto& path : view.writable) add({"--bind", path.string(), path.string()});
  add({"--ro-bind", view.socket_dir.string(), kJailSocketDir.string()});
  add({"--chdir", (view.workdir.empty() ? kJailScratchDir : view.workdir).string(), "--"});
  argv.insert(argv.end(), host_argv.begin(), host_argv.end());
  return argv;
}

std::vector<std::pair<std::string, std::string>> plugin_environment(const std::vector<std::string>& granted_names) {
  static const std::vector<std::string> kAllowed = {"PATH", "LANG", "LANGUAGE", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                    "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"};
  std::vector<std::pair<std::string, std::string>> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string line = *entry;
    const auto equals = line.find('=');
    if (equals == std::string::npos) continue;
    const std::string name = line.substr(0, equals);
    const bool allowed = std::find(kAllowed.begin(), kAllowed.end(), name) != kAllowed.end() || name.rfind("LC_", 0) == 0 ||
                         name.rfind("BULKHEAD_", 0) == 0 ||
                         std::find(granted_names.begin(), granted_names.end(), name) != granted_names.end();
    if (allowed) env.emplace_back(name, line.substr(equals + 1));
  }
  if (std::none_of(env.begin(), env.end(), [](const auto& v) { return v.first == "PATH"; }))
    env.emplace_back("PATH", "/usr/local/bin:/usr/bin:/bin");
  return env;
}

}  // namespace bulkhead
