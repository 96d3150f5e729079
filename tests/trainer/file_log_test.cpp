// FileLog (common/log.hpp): a file takes every logger's lines while its owner lives; a start
// that throws leaves it open for the error its caller then logs, until stop_log_to_file.
#include <stdexcept>

#include "common/log.hpp"
#include "test_support.hpp"

namespace bulkhead::testing {
namespace {

TEST(FileLog, TakesEveryLoggersLinesWhileItLives) {
  const fs::path file = scratch("log") / "train.log";
  {
    const FileLog log(file.string());
    logger("file-log-test")->info("while it lives");
  }
  logger("file-log-test")->info("after it went");
  const std::string text = read_text(file);
  EXPECT_NE(text.find("[file-log-test] [info] while it lives"), std::string::npos) << text;
  EXPECT_EQ(text.find("after it went"), std::string::npos) << text;
}

TEST(FileLog, AStartThatThrowsLeavesItOpenForTheError) {
  const fs::path file = scratch("log") / "train.log";
  auto start = [&] {
    std::optional<FileLog> log;
    const FileLog::OpenOnThrow open_on_throw(log);
    log.emplace(file.string());
    throw std::runtime_error("the start failed");
  };
  try {
    start();
    FAIL() << "the start did not throw";
  } catch (const std::runtime_error& e) {
    logger("file-log-test")->error("{}", e.what());  // as bulkhead train's caller logs it
  }
  stop_log_to_file(file.string());
  logger("file-log-test")->info("after it was closed");
  const std::string text = read_text(file);
  EXPECT_NE(text.find("[error] the start failed"), std::string::npos) << text;
  EXPECT_EQ(text.find("after it was closed"), std::string::npos) << text;
}

TEST(FileLog, AStartThatSucceedsClosesItWithItsOwner) {
  const fs::path file = scratch("log") / "train.log";
  {
    std::optional<FileLog> log;
    {
      const FileLog::OpenOnThrow open_on_throw(log);
      log.emplace(file.string());
    }
    logger("file-log-test")->info("owned");
  }
  logger("file-log-test")->info("after its owner went");
  const std::string text = read_text(file);
  EXPECT_NE(text.find("owned"), std::string::npos) << text;
  EXPECT_EQ(text.find("after its owner went"), std::string::npos) << text;
}

}  // namespace
}  // namespace bulkhead::testing
