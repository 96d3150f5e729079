#include "landlock.hpp"

#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace bulkhead::host {
namespace {

// Newer than the kernel headers of Debian 12: the values are the kernel's ABI.
constexpr std::uint64_t kTruncate = 1ULL << 14;      // ABI 3
constexpr std::uint64_t kNetBindTcp = 1ULL << 0;     // ABI 4
constexpr std::uint64_t kNetConnectTcp = 1ULL << 1;  // ABI 4
constexpr std::uint64_t kScopeAbstractUnixSocket = 1ULL << 0;  // ABI 6
constexpr std::uint64_t kScopeSignal = 1ULL << 1;              // ABI 6

// The ruleset attribute as of ABI 6 (the kernel takes a prefix of it from older callers too).
struct RulesetAttr {
  std::uint64_t handled_access_fs;
  std::uint64_t handled_access_net;
  std::uint64_t scoped;
};

constexpr std::uint64_t kRead = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
constexpr std::uint64_t kWrite = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
                                 LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
                                 LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
                                 LANDLOCK_ACCESS_FS_MAKE_SYM;

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("landlock: " + what + ": " + std::strerror(errno)); }

// Allows `access` beneath `path` (of a file: the rights that apply to files); a path that does
// not exist here is skipped.
void allow(int ruleset, const std::string& path, std::uint64_t access) {
  const int fd = ::open(path.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0) return;
  struct stat info {};
  if (::fstat(fd, &info) == 0 && !S_ISDIR(info.st_mode))
    access &= LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE | kTruncate;
  landlock_path_beneath_attr rule{access, fd};
  const long added = syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0);
  ::close(fd);
  if (added != 0) fail("adding a rule for " + path);
}

}  // namespace

int restrict_with_landlock(const std::vector<std::string>& writable, bool network) {
  const long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi < 1) return 0;  // not built into this kernel, or turned off
  std::uint64_t write = kWrite | (abi >= 2 ? LANDLOCK_ACCESS_FS_REFER : 0) | (abi >= 3 ? kTruncate : 0);
  RulesetAttr attr{kRead | write, 0, 0};
  if (abi >= 4 && !network) attr.handled_access_net = kNetBindTcp | kNetConnectTcp;
  if (abi >= 6) attr.scoped = kScopeAbstractUnixSocket | kScopeSignal;
  const std::size_t size = abi >= 6 ? sizeof attr : abi >= 4 ? 2 * sizeof(std::uint64_t) : sizeof(std::uint64_t);
  const int ruleset = int(syscall(SYS_landlock_create_ruleset, &attr, size, 0));
  if (ruleset < 0) fail("creating the ruleset");
  allow(ruleset, "/", kRead);
  for (const char* device : {"/dev/null", "/dev/zero", "/dev/full"})
    allow(ruleset, device, kRead | LANDLOCK_ACCESS_FS_WRITE_FILE | (abi >= 3 ? kTruncate : 0));
  allow(ruleset, "/dev/shm", kRead | write);
  for (const auto& path : writable) allow(ruleset, path, kRead | write);
  const long restricted = syscall(SYS_landlock_restrict_self, ruleset, 0);
  ::close(ruleset);
  if (restricted != 0) fail("restricting this process");
  return int(abi);
}

}  // namespace bulkhead::host
