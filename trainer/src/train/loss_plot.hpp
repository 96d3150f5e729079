// loss_plot.hpp — loss.png: the run's curves at a glance, without TensorBoard.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace bulkhead {

// Reads metrics.jsonl (the whole run, resumes included) and writes a plot to png, atomically:
// each step's loss in gray, its moving average in blue, val_loss per epoch in red, steps along x.
// Does nothing when there is no step yet.
void write_loss_plot(const std::filesystem::path& metrics, const std::filesystem::path& png);

// One value per x (a study's main metric per trial) as blue squares joined by a line, and the x of
// failed ones as red squares on the axis; caption on top. Written atomically like loss.png.
void write_points_plot(const std::filesystem::path& png, const std::vector<std::pair<double, double>>& points,
                       const std::vector<double>& failed, const std::string& caption);

}  // namespace bulkhead
