// fault (test plugin): misbehaves on purpose, for real. Options:
//   fault:  segfault | abort | exit0 | exit3 | throw | hang | sleep | wrong_size | flood | stderr_flood |
//           spew | hog | spin | fds | none
//           (spew: 64 MiB on stdout with no newline; spin: burns CPU until the CPU-time limit;
//            fds: opens files until refused, then fails the hook saying how many it got)
//   hooks:  the hooks that misbehave (default: all)
//   every:  misbehave on every k-th call of those hooks (default 1: every call)
//   sleep_ms: for "sleep"
//   delay_ms: wait this long before misbehaving (so that several requests are in flight)
//   caption_suffix: appended by every transform_caption call that returns (default "": none), so
//                   a test can tell the captions the plugin transformed from those that fell back
//   poison: transform_caption misbehaves only on captions that contain this text (in a batch too:
//           the default transform_captions calls transform_caption for each caption)
// Otherwise every hook passes its input through unchanged, so training must be unaffected.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>
#include <vector>

#include <bulkhead/plugin.hpp>

namespace {

class Fault : public bulkhead::Plugin {
 public:
  void on_training_start(const bulkhead::Kwargs&) override { maybe_fail("on_training_start"); }
  void on_epoch_start(const bulkhead::Kwargs&) override { maybe_fail("on_epoch_start"); }
  void on_step_start(const bulkhead::Kwargs&) override { maybe_fail("on_step_start"); }
  void on_step_end(const bulkhead::Kwargs&) override { maybe_fail("on_step_end"); }
  void on_epoch_end(const bulkhead::Kwargs&) override { maybe_fail("on_epoch_end"); }
  void on_training_end(const bulkhead::Kwargs&) override { maybe_fail("on_training_end"); }
  void on_checkpoint_saved(const bulkhead::Kwargs&) override { maybe_fail("on_checkpoint_saved"); }
  void on_validation_end(const bulkhead::Kwargs&) override { maybe_fail("on_validation_end"); }
  void on_log(const bulkhead::Kwargs&) override { maybe_fail("on_log"); }
  bulkhead::Json on_model_load(const bulkhead::Kwargs&) override { return maybe_fail("on_model_load"), nullptr; }
  bulkhead::Json on_model_step(const bulkhead::Kwargs&) override { return maybe_fail("on_model_step"), nullptr; }
  bulkhead::Json on_model_save(const bulkhead::Kwargs&) override { return maybe_fail("on_model_save"), nullptr; }
  std::string transform_caption(const std::string& caption) override {
    const std::string poison = context().options().value("poison", std::string());
    if (poison.empty() || caption.find(poison) != std::string::npos) maybe_fail("transform_caption");
    return caption + context().options().value("caption_suffix", std::string());
  }
  bulkhead::Image transform_pil_image(bulkhead::Image image) override {
    if (maybe_fail("transform_pil_image") && mode() == "wrong_size") {
      image.width /= 2;
      image.data.resize(image.expected_size());
    }
    return image;
  }

 private:
  std::string mode() const { return context().options().value("fault", "none"); }

  bool targeted(const std::string& hook) const {
    const auto& options = context().options();
    if (!options.contains("hooks")) return true;
    for (const auto& h : options["hooks"])
      if (h == hook) return true;
    return false;
  }

  // Returns true when this call is one that misbehaves (for faults the caller applies itself).
  bool maybe_fail(const std::string& hook) {
    if (!targeted(hook)) return false;
    const long every = context().options().value("every", 1L);
    if (++calls_ % every != 0) return false;
    const std::string fault = mode();
    if (const long delay = context().options().value("delay_ms", 0L); delay > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    if (fault == "segfault") raise(SIGSEGV);
    if (fault == "abort") std::abort();
    if (fault == "exit0") std::_Exit(0);
    if (fault == "exit3") std::_Exit(3);
    if (fault == "throw") throw bulkhead::HookError("injected failure in " + hook);
    if (fault == "hang")
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    if (fault == "sleep")
      std::this_thread::sleep_for(std::chrono::milliseconds(context().options().value("sleep_ms", 10000L)));
    if (fault == "flood")
      for (int i = 0; i < 100000; ++i) std::cout << "flood line " << i << " from " << hook << "\n";
    if (fault == "stderr_flood")
      for (int i = 0; i < 100000; ++i) std::cerr << "flood line " << i << " from " << hook << "\n";
    if (fault == "spew") {
      const std::string chunk(1 << 20, 'x');
      for (int i = 0; i < 64; ++i) std::cout << chunk;
      std::cout << std::flush;
    }
    if (fault == "spin")
      for (volatile unsigned long i = 0;; ++i) {
      }
    if (fault == "fds") {
      std::vector<int> fds;
      int error = 0;
      for (int i = 0; i < 1000000; ++i) {
        const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
          error = errno;
          break;
        }
        fds.push_back(fd);
      }
      for (int fd : fds) ::close(fd);
      throw bulkhead::HookError("opened " + std::to_string(fds.size()) + " more files before: " + std::strerror(error));
    }
    if (fault == "hog") {
      // Allocate and touch memory until the address-space limit stops us.
      std::vector<char*> blocks;
      for (;;) {
        char* block = static_cast<char*>(std::malloc(64 << 20));
        if (block == nullptr) std::abort();
        std::memset(block, 1, 64 << 20);
        blocks.push_back(block);
      }
    }
    return true;
  }

  long calls_ = 0;
};

}  // namespace

BULKHEAD_PLUGIN(Fault, "fault", "1.0.0", "Misbehaves on purpose (test plugin)")
