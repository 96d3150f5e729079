// loss_plot.hpp — loss.png: the run's curves at a glance, without TensorBoard.
#pragma once

#include <filesystem>

namespace bulkhead {

// Reads metrics.jsonl (the whole run, resumes included) and writes a plot to png, atomically:
// each step's loss in gray, its moving average in blue, val_loss per epoch in red, steps along x.
// Does nothing when there is no step yet.
void write_loss_plot(const std::filesystem::path& metrics, const std::filesystem::path& png);

}  // namespace bulkhead
