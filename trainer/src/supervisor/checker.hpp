// checker.hpp — `bulkhead plugins check`: starts a plugin exactly as training would, calls every
// hook it declares with representative inputs, and validates every reply against schemas/. It
// also holds the plugin to what training relies on without asking every time: hello's hooks match
// the manifest's, an unknown method gets unknown_method, an undeclared catalogue hook gets nil or
// its input back, control requests are valid, and shutdown ends in exit status 0.
#pragma once

#include <ostream>
#include <string>

#include "supervisor/manifest.hpp"

namespace bulkhead {

// Prints a table of hooks with pass/fail and round-trip latency; true when everything conforms.
bool check_plugin(const std::string& entry, const PluginCatalog& catalog, std::ostream& out);

// A value that satisfies `schema` (a hook's params), built from its required properties;
// images are a small gradient.
Json example_for_schema(const Json& schema);

}  // namespace bulkhead
