"""stateful-python: a plugin whose decisions depend on its state alone (tests/trainer/plugin_state_test.cpp).

Its state: the epochs it has seen, a 32-bit generator, and whose state it is. At each epoch's end
it counts, draws, and sets grad_accum from both, so a plugin that lost its state decides
differently. The same algorithm is in stateful-node and the C++ stateful plugin.
Options: seed; crash_every: a segfault at every N-th on_step_start of a process; state_bytes: a
state padded to that size; fail_get_state; reject_state (set_state raises).
"""
import ctypes

from bulkhead_plugin import BasePlugin


def next_random(value):
    return (value * 1664525 + 1013904223) & 0xFFFFFFFF


class Stateful(BasePlugin):
    state_attributes = ("owner", "epochs", "random", "padding")

    def configure(self):
        self.owner = self.plugin_meta()[0]
        self.epochs = 0
        self.random = int(self.options["seed"])
        self.padding = b"\0" * int(self.options["state_bytes"])
        self.step_starts = 0  # of this process: not state

    def on_step_start(self, **kwargs):
        self.step_starts += 1
        every = int(self.options["crash_every"])
        if every and self.step_starts % every == 0:
            ctypes.string_at(0)  # a real segfault

    def on_epoch_end(self, **kwargs):
        self.epochs += 1
        self.random = next_random(self.random)
        grad_accum = 1 + (self.epochs + (self.random >> 16)) % 3
        self.set_arg("grad_accum", grad_accum)
        self.log("info", "epoch end %d: random %d, grad_accum %d" % (self.epochs, self.random, grad_accum))

    def get_state(self):
        if self.options["fail_get_state"]:
            raise RuntimeError("get_state fails on purpose")
        return super().get_state()

    def set_state(self, state):
        if self.options["reject_state"]:
            raise ValueError("this version reads no earlier state")
        if state.get("owner") != self.owner:
            raise ValueError("given the state of %r" % (state.get("owner"),))
        super().set_state(state)
        self.log("info", "set_state: %d epochs seen" % self.epochs)
