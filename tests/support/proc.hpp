#pragma once
// A /proc file's text, read by tests that look at processes from outside.
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

namespace bulkhead {

// Nothing when its process ended while being read: the read then fails with ESRCH, on which
// libstdc++'s filebuf throws (istreambuf_iterator does not catch it).
inline std::optional<std::string> read_proc_file(const std::string& path) {
  try {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  } catch (const std::ios_base::failure&) {
    return std::nullopt;
  }
}

}  // namespace bulkhead
