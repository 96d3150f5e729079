// The cgroup v2 groups (supervisor/resource_group.hpp): their file protocol against a fake cgroupfs
// (a folder holding the kernel's files), and against the real cgroup2 file system where this
// machine mounts one and lets the test write it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "supervisor/resource_group.hpp"

namespace {

namespace fs = std::filesystem;
using bulkhead::CgroupV2Tree;
using bulkhead::ResourceGroup;
using bulkhead::TreeLimits;

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text(const fs::path& file, const std::string& text) { std::ofstream(file) << text; }

class FakeCgroupfs : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / ("fake-cgroupfs-" + std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    write_text(root_ / "cgroup.procs", "");
    write_text(root_ / "cgroup.subtree_control", "");
  }
  void TearDown() override { fs::remove_all(root_); }

  // The files the kernel would make in a new group `dir`.
  static void kernel_files(const fs::path& dir) {
    fs::create_directories(dir);
    for (const char* file : {"cgroup.procs", "cgroup.kill", "memory.max", "memory.swap.max", "pids.max", "memory.events",
                             "pids.events", "cpu.stat"})
      write_text(dir / file, "");
  }

  // What the kernel takes away with a group: without it the group's folder cannot be removed.
  static void remove_kernel_files(const fs::path& dir) {
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.is_regular_file()) fs::remove(entry.path());
  }

  fs::path root_;
};

TEST_F(FakeCgroupfs, EveryDelegatedControllerIsEnabledAndEveryLimitWritten) {
  write_text(root_ / "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
  CgroupV2Tree tree(root_);
  ASSERT_EQ(tree.problem, "");
  EXPECT_EQ(tree.dir, root_ / ("bulkhead-" + std::to_string(getpid())));
  EXPECT_EQ(tree.controllers, (std::vector<std::string>{"memory", "pids", "cpu"}));
  EXPECT_NE(read_text(tree.dir / "cgroup.subtree_control").find("+"), std::string::npos) << "controllers handed to the plugin groups";

  kernel_files(tree.dir / "plugin-1");
  auto group = ResourceGroup::create_v2(tree, "plugin-1", TreeLimits{512, 32, 3});
  ASSERT_NE(group, nullptr);
  const fs::path dir = tree.dir / "plugin-1";
  EXPECT_EQ(read_text(dir / "memory.max"), std::to_string(512LL << 20));
  EXPECT_EQ(read_text(dir / "memory.swap.max"), "0");
  EXPECT_EQ(read_text(dir / "pids.max"), "35") << "the limit plus the jail's own three processes";
  EXPECT_EQ(group->join_files(), (std::vector<std::string>{(dir / "cgroup.procs").string()}));
  EXPECT_EQ(group->breach(), "");

  write_text(dir / "cpu.stat", "usage_usec 3000001\nuser_usec 3000001\nsystem_usec 0\n");
  EXPECT_EQ(group->breach(), "CPU time limit of 3 s reached by the plugin's processes together");
  write_text(dir / "pids.events", "max 1\n");
  EXPECT_EQ(group->breach(), "process limit of 32 reached by the plugin's processes together");
  write_text(dir / "memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n");
  EXPECT_EQ(group->breach(), "memory limit of 512 MB reached by the plugin's processes together");

  group->kill();
  EXPECT_EQ(read_text(dir / "cgroup.kill"), "1") << "the whole tree killed through cgroup.kill";
  remove_kernel_files(dir);
  group.reset();
  EXPECT_FALSE(fs::exists(dir)) << "the group is removed with its host";
}

TEST_F(FakeCgroupfs, AControllerNotDelegatedIsLeftToTheWarden) {
  write_text(root_ / "cgroup.controllers", "cpu io\n");
  CgroupV2Tree tree(root_);
  ASSERT_EQ(tree.problem, "");
  EXPECT_EQ(tree.controllers, (std::vector<std::string>{"cpu"}));
  kernel_files(tree.dir / "p");
  auto group = ResourceGroup::create_v2(tree, "p", TreeLimits{512, 32, 3});
  ASSERT_NE(group, nullptr);
  EXPECT_EQ(read_text(tree.dir / "p" / "memory.max"), "") << "no memory controller: nothing to write";
  EXPECT_EQ(read_text(tree.dir / "p" / "pids.max"), "");
  write_text(tree.dir / "p" / "memory.events", "oom_kill 1\n");  // not the group's to count
  EXPECT_EQ(group->breach(), "");
  remove_kernel_files(tree.dir / "p");
}

TEST_F(FakeCgroupfs, AFolderThatIsNoCgroupIsNamed) {
  CgroupV2Tree tree(root_);  // no cgroup.controllers
  EXPECT_NE(tree.problem.find("no cgroup v2 at " + root_.string()), std::string::npos) << tree.problem;
  EXPECT_EQ(ResourceGroup::create_v2(tree, "p", TreeLimits{}), nullptr);
}

// The real file system: where this test may write a cgroup2 tree (root, or a delegated one).
class RealCgroup2 : public ::testing::Test {
 public:
  void SetUp() override {
    const fs::path parent = ResourceGroup::own_cgroup2();
    if (parent.empty()) GTEST_SKIP() << "this machine mounts no cgroup2 file system";
    tree_ = std::make_unique<CgroupV2Tree>(parent);
    if (!tree_->problem.empty()) GTEST_SKIP() << "cgroup2 is mounted but not writable here: " << tree_->problem;
  }

  // A child inside `group` that runs `work`, joined the way the trainer's hosts join.
  static pid_t child_in(const ResourceGroup& group, void (*work)()) {
    const pid_t pid = fork();
    if (pid == 0) {
      for (const auto& file : group.join_files()) std::ofstream(file) << "0";
      work();
      _exit(0);
    }
    return pid;
  }

  // Until the group reports a breach (the test's own timeout bounds it).
  static std::string wait_for_breach(const ResourceGroup& group) {
    for (std::string why;; std::this_thread::sleep_for(std::chrono::milliseconds(20)))
      if (!(why = group.breach()).empty()) return why;
  }

  static int wait_status(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
  }

  // Whether `controller` is delegated to the tree; else why the test skips.
  bool delegated(const std::string& controller, std::string& why) const {
    if (std::find(tree_->controllers.begin(), tree_->controllers.end(), controller) != tree_->controllers.end()) return true;
    why = "the " + controller + " controller is not delegated to this cgroup2 tree (bound to cgroup v1 here?); " +
          tree_->parent.string() + " offers: " + read_text(tree_->parent / "cgroup.controllers");
    return false;
  }

  std::unique_ptr<CgroupV2Tree> tree_;
};

void spin() {
  for (volatile unsigned long i = 0;; ++i) {
  }
}

void allocate_256_mb() {
  std::vector<char> memory(256 << 20, 1);
  pause();
}

void fork_64() {
  for (int i = 0; i < 64; ++i)
    if (fork() == 0) pause();
  pause();
}

// A child in a new group `name` with `limits` runs `work` until the group names `expected`; then
// the group is killed. Returns the child's wait status.
int breach_of(const CgroupV2Tree& tree, const char* name, const TreeLimits& limits, void (*work)(), const std::string& expected) {
  auto group = ResourceGroup::create_v2(tree, name, limits);
  if (group == nullptr) {
    ADD_FAILURE() << "no group " << name << " in " << tree.dir;
    return -1;
  }
  const pid_t child = RealCgroup2::child_in(*group, work);
  EXPECT_EQ(RealCgroup2::wait_for_breach(*group), expected);
  group->kill();
  return RealCgroup2::wait_status(child);
}

TEST_F(RealCgroup2, ATreePastItsCpuTimeIsNamedAndKilledWithCgroupKill) {
  const int status = breach_of(*tree_, "cpu-test", TreeLimits{2048, 64, 1}, spin,
                               "CPU time limit of 1 s reached by the plugin's processes together");
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
}

TEST_F(RealCgroup2, ATreePastItsMemoryIsNamed) {
  std::string why;
  if (!delegated("memory", why)) GTEST_SKIP() << why;
  breach_of(*tree_, "memory-test", TreeLimits{64, 64, 3600}, allocate_256_mb,
            "memory limit of 64 MB reached by the plugin's processes together");
}

TEST_F(RealCgroup2, ATreePastItsProcessesIsNamed) {
  std::string why;
  if (!delegated("pids", why)) GTEST_SKIP() << why;
  breach_of(*tree_, "pids-test", TreeLimits{2048, 8, 3600}, fork_64, "process limit of 8 reached by the plugin's processes together");
}

}  // namespace
