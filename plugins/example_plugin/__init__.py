"""EveryDream2's ExampleLoggingPlugin, in Bulkhead's words: it logs every hook it sees, with its kwargs.

Reachable both as the manifest plugin ``example_plugin`` and as the EveryDream2 class path
``plugins.example_plugin.ExampleLoggingPlugin`` in train.json.
"""
import logging

from plugins.plugins import BasePlugin

log = logging.getLogger("example_plugin")


def _describe(kwargs):
    parts = []
    for key in sorted(kwargs):
        value = kwargs[key]
        text = "<callback>" if callable(value) else repr(value)
        if len(text) > 200:
            text = text[:197] + "..."
        parts.append("%s=%s" % (key, text))
    return ", ".join(parts)


class ExampleLoggingPlugin(BasePlugin):
    def __init__(self):
        print("ExampleLoggingPlugin: loaded (logs every lifecycle hook and its kwargs)")

    def _log(self, hook, kwargs):
        log.info("%s: %s", hook, _describe(kwargs))

    def on_training_start(self, **kwargs):
        self._log("on_training_start", kwargs)

    def on_epoch_start(self, **kwargs):
        self._log("on_epoch_start", kwargs)

    def on_step_start(self, **kwargs):
        self._log("on_step_start", kwargs)

    def on_step_end(self, **kwargs):
        self._log("on_step_end", kwargs)

    def on_epoch_end(self, **kwargs):
        self._log("on_epoch_end", kwargs)

    def on_training_end(self, **kwargs):
        self._log("on_training_end", kwargs)

    def on_checkpoint_saved(self, **kwargs):
        self._log("on_checkpoint_saved", kwargs)

    def on_validation_end(self, **kwargs):
        self._log("on_validation_end", kwargs)
