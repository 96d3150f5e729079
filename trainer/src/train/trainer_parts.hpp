// trainer_parts.hpp — private to the Trainer's files (trainer*.cpp): what more than one of them needs.
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

#include "train/trainer.hpp"

namespace bulkhead {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace trainer_parts {

constexpr double kPacedLoss = 1.0;  // the loss a paced (benchmark-mode) step reports

// Ctrl-C, SIGTERM or SIGHUP was asked for (request_interrupt).
inline bool interrupted() { return requested_interrupt() != 0; }

}  // namespace trainer_parts
}  // namespace bulkhead
