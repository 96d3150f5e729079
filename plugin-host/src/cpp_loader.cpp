#include "cpp_loader.hpp"

#include <dlfcn.h>

#include <iostream>
#include <memory>

#include <bulkhead/serve.hpp>

namespace bulkhead::host {

int serve_cpp_plugin(const std::string& library) {
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    std::cerr << "bulkhead-plugin-host: cannot load " << library << ": " << dlerror() << std::endl;
    return 78;
  }
  using ExportFn = const PluginExport* (*)();
  auto exported_fn = reinterpret_cast<ExportFn>(dlsym(handle, kPluginExportSymbol));
  if (exported_fn == nullptr) {
    std::cerr << "bulkhead-plugin-host: " << library << " exports no plugin (no BULKHEAD_PLUGIN(...) in it)" << std::endl;
    return 78;
  }
  const PluginExport* exported = exported_fn();
  if (exported->abi_version != kPluginAbiVersion) {
    std::cerr << "bulkhead-plugin-host: " << library << " was built for plugin ABI " << exported->abi_version
              << ", this host speaks " << kPluginAbiVersion << std::endl;
    return 78;
  }
  std::unique_ptr<Plugin> plugin(exported->create());
  PluginMeta meta{exported->name, exported->version, exported->description, exported->hooks()};
  return serve(*plugin, meta, ServeOptions::from_environment());
}

}  // namespace bulkhead::host
