"""Rolling checkpoints (EveryDream2's InterruptiblePlugin): every N steps and/or every N epochs, ask
the trainer to save a checkpoint tagged "rolling"; when the trainer reports a new rolling checkpoint,
delete the previous one, so that at most one rolling save is on disk. Optionally delete the last one
when training ends normally (the trainer writes its own final checkpoint then).

The plugin never touches the run folder itself (its jail cannot see it): it asks through a
save_checkpoint control request, learns the file's path from on_checkpoint_saved, and asks the
trainer to delete it later (delete_checkpoint), which the trainer allows only for checkpoints it
saved on this plugin's request.

Options: every_n_steps (0 = off), every_n_epochs (0 = off), tag, delete_previous, delete_on_training_end.
"""
import logging

from plugins.plugins import BasePlugin

log = logging.getLogger("rolling_checkpoint")


class RollingCheckpoint(BasePlugin):
    # The newest rolling save survives a restart of this plugin and a --resume of the run, so it
    # is still deleted when the next one comes.
    state_attributes = ("previous",)

    def configure(self):
        o = self.options
        self.every_n_steps = int(o.get("every_n_steps", 0))
        self.every_n_epochs = int(o.get("every_n_epochs", 1))
        self.tag = str(o.get("tag", "rolling"))
        self.delete_previous = bool(o.get("delete_previous", True))
        self.delete_on_training_end = bool(o.get("delete_on_training_end", True))
        self.previous = None
        if self.every_n_steps < 0 or self.every_n_epochs < 0:
            raise ValueError("every_n_steps and every_n_epochs must be 0 (off) or positive")

    def _ensure(self):
        if not hasattr(self, "tag"):
            self.configure()

    def on_step_end(self, **kwargs):
        self._ensure()
        steps_done = int(kwargs["global_step"]) + 1  # global_step counts from 0 and grows after this hook
        if self.every_n_steps and steps_done % self.every_n_steps == 0:
            self.request_checkpoint(self.tag, "rolling save after %d steps" % steps_done)

    def on_epoch_end(self, **kwargs):
        self._ensure()
        epochs_done = int(kwargs["epoch"]) + 1
        if self.every_n_epochs and epochs_done % self.every_n_epochs == 0:
            self.request_checkpoint(self.tag, "rolling save after epoch %d" % epochs_done)

    def on_checkpoint_saved(self, **kwargs):
        self._ensure()
        if kwargs.get("tag") != self.tag:
            return
        path = kwargs["path"]
        if self.delete_previous and self.previous and self.previous != path:
            self._delete(self.previous)
        self.previous = path

    def on_training_end(self, **kwargs):
        self._ensure()
        if self.delete_on_training_end and self.previous:
            self._delete(self.previous)
            self.previous = None

    def _delete(self, path):
        self.request_checkpoint_removal(path, "rolling checkpoint replaced")
        log.info("asked the trainer to delete the previous rolling checkpoint %s", path)
