"""fault-python (test plugin): the C++ fault plugin's misbehaviours, through the Python SDK.

Options, as tests/plugins/fault/fault.cpp:
  fault:    segfault | abort | exit0 | exit3 | throw | hang | sleep | wrong_size | flood |
            stderr_flood | hog | none
  hooks:    the hooks that misbehave (default: all)
  every:    misbehave on every k-th call of those hooks (default 1)
  sleep_ms: for "sleep"
Otherwise every hook passes its input through unchanged.
"""
import ctypes
import os
import sys
import time

from bulkhead_plugin import BasePlugin


class Fault(BasePlugin):
    calls = 0

    def _misbehaves(self, hook):
        hooks = self.options.get("hooks")
        if hooks is not None and hook not in hooks:
            return False
        self.calls += 1
        if self.calls % int(self.options.get("every", 1)) != 0:
            return False
        fault = self.options.get("fault", "none")
        if fault == "segfault":
            ctypes.string_at(0)
        elif fault == "abort":
            os.abort()
        elif fault == "exit0":
            os._exit(0)
        elif fault == "exit3":
            os._exit(3)
        elif fault == "throw":
            raise RuntimeError("injected failure in " + hook)
        elif fault == "hang":
            while True:
                time.sleep(3600)
        elif fault == "sleep":
            time.sleep(int(self.options.get("sleep_ms", 10000)) / 1000)
        elif fault == "flood":
            for i in range(100000):
                print("flood line %d from %s" % (i, hook))
        elif fault == "stderr_flood":
            for i in range(100000):
                print("flood line %d from %s" % (i, hook), file=sys.stderr)
        elif fault == "hog":
            blocks = []
            while True:  # until the address-space limit stops us (MemoryError is not caught)
                blocks.append(bytearray(64 << 20))
        return True

    def _observe(self, hook):
        self._misbehaves(hook)

    def on_training_start(self, **kwargs): self._observe("on_training_start")
    def on_epoch_start(self, **kwargs): self._observe("on_epoch_start")
    def on_step_start(self, **kwargs): self._observe("on_step_start")
    def on_step_end(self, **kwargs): self._observe("on_step_end")
    def on_epoch_end(self, **kwargs): self._observe("on_epoch_end")
    def on_training_end(self, **kwargs): self._observe("on_training_end")
    def on_checkpoint_saved(self, **kwargs): self._observe("on_checkpoint_saved")
    def on_validation_end(self, **kwargs): self._observe("on_validation_end")
    def on_log(self, **kwargs): self._observe("on_log")

    def transform_caption(self, caption):
        self._misbehaves("transform_caption")
        return caption

    def transform_pil_image(self, img):
        if self._misbehaves("transform_pil_image") and self.options.get("fault") == "wrong_size":
            return img.resize((img.width // 2, img.height))
        return img
