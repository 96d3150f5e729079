"""EveryDream2's ``train`` module, as far as it makes sense out of process.

EveryDream2's plugins import from its ``train.py`` (``from train import save_model``). A Bulkhead
plugin runs in its own jailed process, holds no model and cannot see the run folder, so:

- ``save_model(save_path, ...)`` asks the trainer for a checkpoint (tagged with the last part of
  ``save_path``), written where the trainer keeps checkpoints; the plugin is told where by a log
  line and by ``on_checkpoint_saved``;
- removing that ``save_path`` afterwards (``shutil.rmtree``, ``os.remove``), as EveryDream2's
  rolling-checkpoint plugin does with its previous save, asks the trainer to delete the
  checkpoint (``delete_checkpoint``), which it does for checkpoints saved on this plugin's request;
- ``EveryDreamTrainingState`` is the class of the ed_state that model hooks get (an annotation, in
  EveryDream2's textual_inversion.py): its tokenizer and text encoder stand-ins (model.py);
- names that hand over the live model (``ed_state.unet``, the optimizer...) raise at import,
  saying why and what to use instead.
"""
import os
import re
import shutil

from bulkhead_plugin.everydream2.model import EdModelState as EveryDreamTrainingState  # noqa: F401 (exported)

_saved = {}  # os.path.abspath(save_path) -> tag, for the removals that follow


def _sink():
    from bulkhead_plugin import plugin
    if plugin.HOST_SINK is None:
        raise RuntimeError("train.save_model works only inside Bulkhead's plugin host")
    return plugin.HOST_SINK


def _tag_for(save_path):
    name = os.path.basename(os.path.normpath(str(save_path))) or "save_model"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]


def save_model(save_path, *args, **kwargs):
    """Ask the trainer for a checkpoint; other arguments (ed_state, precision, optimizer...) are
    the trainer's business and ignored."""
    tag = _tag_for(save_path)
    _saved[os.path.abspath(str(save_path))] = tag
    sink = _sink()
    sink.control({"action": "save_checkpoint", "tag": tag, "reason": "train.save_model(%s)" % save_path})
    sink.log("info", "save_model(%s): the trainer writes it as checkpoints/requested-%s-*.pt in its run folder "
                     "(on_checkpoint_saved gives the path)" % (save_path, tag))


def _removes_a_save(original):
    def remove(path, *args, **kwargs):
        tag = _saved.pop(os.path.abspath(str(path)), None)
        if tag is None:
            return original(path, *args, **kwargs)
        _sink().control({"action": "delete_checkpoint", "tag": tag, "reason": "the plugin removed %s" % path})
    return remove


shutil.rmtree = _removes_a_save(shutil.rmtree)
os.remove = _removes_a_save(os.remove)
os.unlink = _removes_a_save(os.unlink)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)  # what the import machinery asks of every module
    raise ImportError(
        "train.%s cannot work out of process: Bulkhead runs each plugin in its own jailed process, which never "
        "holds EveryDream2's live model (ed_state.unet, vae, optimizer). Plugins see plain values "
        "(ed_state.grad_accum, lr, batch_size), ask for changes with control requests, and reach the model through "
        "model access (EveryDreamTrainingState's tokenizer and text encoder); save_model works (the trainer saves). See docs/writing-plugins.md, 'Move an EveryDream2 plugin over'." % name)
