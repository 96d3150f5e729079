"""rank-probe: where do a plugin's hooks run in a data-parallel run (tests/trainer/data_parallel_test.cpp)?

Each hook logs a line naming it, the rank of its host and the rank its kwargs carry; at
grad_accum_at_step it asks for grad_accum 2, at stop_at_step it asks to stop. Both are asked on
the rank that runs on_step_end (rank 0), and every rank must follow, or the ranks' collectives
no longer match and the run hangs or fails. Its state is the count of its transforms; on
crash_on_rank it segfaults once (a file in its scratch folder, which outlives restarts, says it
did) after crash_after_transforms, and the restarted host logs the count it got back.
"""
import ctypes
import os

from bulkhead_plugin import BasePlugin


class RankProbe(BasePlugin):
    state_attributes = ("transforms",)

    def configure(self):
        self.transforms = 0
        self.log("info", "host of rank %d of %d, seed %s" % (self.rank, self.world_size, self.seed))

    def on_training_start(self, **kwargs):
        self.log("info", "observer on_training_start on host rank %d, kwargs rank %s of %s"
                 % (self.rank, kwargs.get("rank"), kwargs.get("world_size")))

    def on_epoch_end(self, **kwargs):
        self.log("info", "observer on_epoch_end on host rank %d" % self.rank)

    def on_step_end(self, **kwargs):
        step = kwargs["global_step"]
        if step == int(self.options["grad_accum_at_step"]):
            self.set_arg("grad_accum", 2)
        if step == int(self.options["stop_at_step"]):
            self.request_stop("rank-probe: stop at step %d" % step)

    def set_state(self, state):
        super().set_state(state)
        self.log("info", "state back on host rank %d: %d transforms" % (self.rank, self.transforms))

    def transform_caption(self, caption):
        self.transforms += 1
        if self.transforms == 1:
            self.log("info", "transform_caption on host rank %d" % self.rank)
        crashed = os.path.join(self.scratch_dir or ".", "crashed")
        if (self.rank == int(self.options["crash_on_rank"]) and self.transforms >= int(self.options["crash_after_transforms"])
                and not os.path.exists(crashed)):
            open(crashed, "w").close()
            ctypes.string_at(0)  # a real segfault
        return caption
