#include "supervisor/python_runtime.hpp"

#include <cstdlib>
#include <sstream>

#include <boost/process.hpp>

namespace bulkhead {
namespace bp = boost::process;

std::filesystem::path python_interpreter(const std::filesystem::path& configured) {
  if (!configured.empty()) return configured;
  const char* env = std::getenv("BULKHEAD_PYTHON");
  return env != nullptr && *env != '\0' ? env : "/usr/bin/python3";
}

std::string python_sdk_problem(const std::filesystem::path& interpreter) {
  static const char* kProbe =
      "import importlib.util\n"
      "print(' '.join(m for m in ('zmq', 'msgpack', 'PIL') if importlib.util.find_spec(m) is None) or 'ok')\n";
  std::string answer;
  try {
    bp::ipstream out;
    bp::child probe(interpreter.string(), "-c", kProbe, bp::std_in < bp::null, bp::std_out > out, bp::std_err > bp::null);
    std::getline(out, answer);
    probe.wait();
    if (probe.exit_code() != 0) answer.clear();
  } catch (const std::exception&) {
    answer.clear();
  }
  if (answer == "ok") return "";
  if (answer.empty()) return interpreter.string() + " cannot be run as a Python interpreter";
  std::string modules, debian, pip;
  std::istringstream names(answer);
  for (std::string name; names >> name;) {
    modules += (modules.empty() ? "" : ", ") + name;
    debian += std::string(" python3-") + (name == "PIL" ? "pil" : name);
    pip += std::string(" ") + (name == "zmq" ? "pyzmq" : name == "PIL" ? "pillow" : name);
  }
  return interpreter.string() + " lacks what Python plugins need: " + modules + " (Debian's python3: apt-get install" +
         debian + "; a virtual environment: pip install" + pip + ")";
}

}  // namespace bulkhead
