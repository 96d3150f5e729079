"""stateful-python: a plugin whose decisions depend on its state alone (tests/trainer/plugin_state_test.cpp).

Its state: the epochs it has seen, a 32-bit generator, and whose state it is. At each epoch's end
it counts, draws, and sets grad_accum from both, so a plugin that lost its state decides
differently. The same algorithm is in stateful-node and the C++ stateful plugin.
Its state also holds values a careless codec changes (2.0, -0.0, 5e-324, a NaN with a payload, the
largest integers): after each set_state it logs "state exact" when they came back bit for bit,
else "state changed: ..." naming which.
Options: seed; crash_every: a segfault at every N-th on_step_start of a process; state_bytes: a
state padded to that size; fail_get_state; reject_state (set_state raises).
"""
import ctypes
import math
import struct

from bulkhead_plugin import BasePlugin


NAN_WITH_PAYLOAD = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000BAD))[0]
EXACT = {"two": 2.0, "zero": 0.0, "negative_zero": -0.0, "subnormal": 5e-324, "nan": NAN_WITH_PAYLOAD,
         "third": 1.0 / 3.0, "integer": 2, "largest": 2 ** 64 - 1, "smallest": -2 ** 63}


def changed_values(values):
    """Which of EXACT's values did not come back as they were (type and bits)."""
    def same(a, b):
        if type(a) is not type(b):
            return False
        return struct.pack("<d", a) == struct.pack("<d", b) if isinstance(a, float) else a == b
    return [name for name, value in EXACT.items() if name not in values or not same(values[name], value)]


def next_random(value):
    return (value * 1664525 + 1013904223) & 0xFFFFFFFF


class Stateful(BasePlugin):
    state_attributes = ("owner", "epochs", "random", "padding", "exact")

    def configure(self):
        self.owner = self.plugin_meta()[0]
        self.epochs = 0
        self.random = int(self.options["seed"])
        self.padding = b"\0" * int(self.options["state_bytes"])
        self.exact = dict(EXACT)
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
        changed = changed_values(self.exact)
        self.log("info", "state changed: %s" % ", ".join(changed) if changed else "state exact")
