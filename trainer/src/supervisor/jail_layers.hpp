// jail_layers.hpp — which walls of the plugin jail hold on this machine, for this user: what
// `bulkhead doctor` prints and the start-up line of train.log says (docs/sandbox.md).
//
//   for (const auto& layer : jail_layers(jail)) std::cout << layer.name << ": " << layer.state << "\n";
#pragma once

#include <string>
#include <vector>

#include "supervisor/sandbox.hpp"

namespace bulkhead {

struct JailLayer {
  std::string name;   // "user namespace", "seccomp", "Landlock", "cgroups", "accounting floor", ...
  bool active = false;
  std::string state;  // what holds, or why not
};

// Each layer, probed here and now (the full jail itself is probed by building one around /bin/true).
std::vector<JailLayer> jail_layers(const JailSettings& jail);

// One line of them: "user namespace: yes; uid mapping: ...; ...".
std::string describe_layers(const std::vector<JailLayer>& layers);

}  // namespace bulkhead
