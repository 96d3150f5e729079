// python_runtime.hpp — the interpreter Python plugins run on, and whether it can run them.
#pragma once

#include <filesystem>
#include <string>

namespace bulkhead {

// train.json's "python" (already resolved against its folder), else $BULKHEAD_PYTHON, else Debian's
// /usr/bin/python3: never whichever python3 is first on PATH.
std::filesystem::path python_interpreter(const std::filesystem::path& configured);

// Empty when `interpreter` runs and imports what the plugin SDK needs (zmq, msgpack, PIL); else
// why not, naming the interpreter, the missing modules and the command that installs them.
std::string python_sdk_problem(const std::filesystem::path& interpreter);

}  // namespace bulkhead
