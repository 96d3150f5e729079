// A C++ plugin built against the SDK header of plugin ABI 2 (vendor/include/bulkhead/plugin.hpp, frozen
// from commit 29b6e55^): what a user's library compiled before the batched hooks came looks
// like to today's host. It must be refused at load, naming both ABIs, never called.
#include <bulkhead/plugin.hpp>

namespace {

class Shout : public bulkhead::Plugin {
 public:
  std::string transform_caption(const std::string& caption) override { return caption + "!"; }
};

}  // namespace

BULKHEAD_PLUGIN(Shout, "cpp-abi2", "1.0.0", "Built against plugin ABI 2 (compat test)")
