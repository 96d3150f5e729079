"""BasePlugin: what a Bulkhead plugin written in Python extends.

Same hook names and ``**kwargs`` convention as EveryDream2's ``plugins.plugins.BasePlugin``,
plus Bulkhead's own hooks. Override only what you need; the hooks a plugin implements are
the methods it overrides. Tested against schemas/hooks.json by tests/sdk (every catalogue
hook has a method here and vice versa).
"""
import logging
import os
import types

from . import catalogue

_EMPTY = types.MappingProxyType({})


class EdState:
    """EveryDream2's ``ed_state``, as plain values: ``ed_state.grad_accum``, ``.lr``, ``.batch_size``.

    Also readable as a mapping (``ed_state["lr"]``). After an EveryDream2-style on_model_load,
    ``ed_state.tokenizer`` and ``ed_state.text_encoder`` too (objects: everydream2/model.py). Its
    other object attributes (``unet``, ``optimizer``, ...) do not exist out of process: reading one
    raises an AttributeError that says so.
    """

    def __init__(self, values, objects=None):
        object.__setattr__(self, "_values", dict(values or {}))
        object.__setattr__(self, "_objects", dict(objects or {}))

    def __getattr__(self, name):
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        objects = object.__getattribute__(self, "_objects")
        if name in objects:
            return objects[name]
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            "ed_state.%s is not available: Bulkhead plugins run out of process and ed_state carries "
            "only plain values (%s); ask the trainer for changes with control requests"
            % (name, ", ".join(sorted(values)) or "none"))

    def __setattr__(self, name, value):
        raise AttributeError("ed_state is read-only; use arg_update_callback or self.set_arg() to change training arguments")

    def __getitem__(self, key):
        return self._values[key]

    def __contains__(self, key):
        return key in self._values

    def get(self, key, default=None):
        return self._values.get(key, default)

    def keys(self):
        return self._values.keys()

    def items(self):
        return self._values.items()

    def to_dict(self):
        return dict(self._values)

    def __eq__(self, other):
        if isinstance(other, EdState):
            return self._values == other._values
        return self._values == other

    def __repr__(self):
        return "EdState(%s)" % ", ".join("%s=%r" % kv for kv in sorted(self._values.items()))


# The running host's way to the trainer (set by bulkhead_plugin.host), for what is not a method of a
# plugin: EveryDream2's `train.save_model`.
HOST_SINK = None


class BasePlugin:
    """Extend this and override the hooks you need.

    Meta: set class attributes ``name``, ``version``, ``description``; unset ones come from
    the manifest (the environment the trainer gives the process).

    After the handshake ``self.options`` holds the plugin's options (manifest defaults
    overlaid with train.json) and ``self.scratch_dir`` a writable folder; then ``configure()``
    is called, before any hook. In a data-parallel run (``bulkhead train --nproc``) each rank has
    its own host of the plugin: ``self.rank`` and ``self.world_size`` say which, and ``self.seed``
    is a seed for the plugin's own randomness that differs from rank to rank (docs/training.md).
    """

    name = None
    version = None
    description = None

    # Replaced by a plain dict after the handshake.
    options = _EMPTY
    scratch_dir = None
    rank = 0
    world_size = 1
    seed = None

    # Set by the host: where control requests and log lines go.
    _bulkhead_sink = None

    # ---- lifecycle hooks (EveryDream2) ------------------------------------------------------
    def on_training_start(self, **kwargs):
        pass

    def on_epoch_start(self, **kwargs):
        pass

    def on_step_start(self, **kwargs):
        pass

    def on_step_end(self, **kwargs):
        pass

    def on_epoch_end(self, **kwargs):
        pass

    def on_training_end(self, **kwargs):
        pass

    # ---- Bulkhead's added observers -----------------------------------------------------------
    def on_checkpoint_saved(self, **kwargs):
        pass

    def on_validation_end(self, **kwargs):
        pass

    def on_log(self, **kwargs):
        pass

    # ---- model access (manifest permissions.model_access, granted in train.json) ------------------
    # Sent only to a plugin granted model_access; what they return is the reply (docs/protocol.md,
    # section 9; bulkhead_plugin.model builds it). EveryDream2's on_model_load / on_model_save
    # receive live objects instead: see bulkhead_plugin.everydream2.model.
    def on_model_load(self, **kwargs):
        """parameters, vocabulary, embedding, global_step, resumed -> None or
        {"add_tokens": [...], "trainable": {...}, "freeze_rest": bool}."""
        return None

    def on_model_step(self, **kwargs):
        """global_step, tensors -> None or {"updates": [...]} (model.update())."""
        return None

    def on_model_save(self, **kwargs):
        """path, reason, global_step, tensors -> None or {"files": [...]} (model.file())."""
        return None

    # ---- data loader transforms (EveryDream2) -------------------------------------------------
    def transform_caption(self, caption: str) -> str:
        return caption

    def transform_pil_image(self, img):
        return img

    # A loader batch in one message (protocol 2). By default each item goes through the per-item
    # method above, so a plugin that overrides only that one gets batches too; override these to
    # work on the whole batch at once (same length, same order).
    def transform_captions(self, captions):
        return [self.transform_caption(caption) for caption in captions]

    def transform_pil_images(self, images):
        return [self.transform_pil_image(img) for img in images]

    # ---- plugin state: kept across restarts, reloads and resumes -----------------------------
    #: Attributes the trainer keeps for this plugin: after a crash, a reload or a ``--resume`` the
    #: new process gets them back before any hook. Plain data only (dict, list, str, int, float,
    #: bool, None, bytes; tuples come back as lists): nothing is pickled across the jail.
    state_attributes = ()

    def get_state(self):
        """The plugin's state, as plain data: by default the attributes named in state_attributes.
        Override get_state and set_state together to keep something else."""
        return {name: getattr(self, name) for name in self.state_attributes if hasattr(self, name)}

    def set_state(self, state):
        """Takes back what get_state returned; raise to refuse it (the plugin then starts empty)."""
        if not isinstance(state, dict):
            raise TypeError("the state is a %s, not the dict of state_attributes" % type(state).__name__)
        unknown = sorted(set(state) - set(self.state_attributes))
        if unknown:
            raise ValueError("the state holds %s, not among state_attributes %r" % (", ".join(unknown),
                                                                                       tuple(self.state_attributes)))
        for name, value in state.items():  # all checked first: never half a state
            setattr(self, name, value)

    # ---- fine-tuning methods (manifest "provides": "method"; docs/methods.md) -------------------
    # describe_method, suggest_trial and evaluate return their result (a dict); see hooks.json.
    def describe_method(self, **kwargs):
        return None

    def suggest_trial(self, **kwargs):
        return None

    def on_trial_start(self, **kwargs):
        pass

    def on_trial_end(self, **kwargs):
        pass

    def evaluate(self, **kwargs):
        return None

    def on_study_end(self, **kwargs):
        pass

    # ---- optional ---------------------------------------------------------------------------
    def configure(self):
        """Called once after the handshake; self.options is ready."""

    # ---- asking the trainer for things --------------------------------------------------------
    def request_stop(self, reason=""):
        """Ask the trainer to stop training cleanly (after saving a checkpoint)."""
        self._control({"action": "stop", "reason": str(reason)})

    def request_checkpoint(self, tag=None, reason=""):
        """Ask the trainer to save a checkpoint now; on_checkpoint_saved reports its path and tag."""
        req = {"action": "save_checkpoint", "reason": str(reason)}
        if tag is not None:
            req["tag"] = str(tag)
        self._control(req)

    def request_checkpoint_removal(self, path, reason=""):
        """Ask the trainer to delete a checkpoint it saved on this plugin's request (the path that
        on_checkpoint_saved reported). Plugins cannot reach the run folder themselves."""
        self._control({"action": "delete_checkpoint", "path": str(path), "reason": str(reason)})

    def set_arg(self, name, value, reason=None):
        """Ask the trainer to change a training argument (only ``grad_accum``, an int 1..4096)."""
        self._control(make_set_arg(name, value, reason))

    def log(self, level, message):
        """Send one structured log line to the trainer ("debug", "info", "warning", "error")."""
        if level not in ("debug", "info", "warning", "error"):
            raise ValueError("log level must be debug, info, warning or error, not %r" % (level,))
        sink = self._bulkhead_sink
        if sink is not None:
            sink.log(level, str(message))
        else:
            logging.getLogger(type(self).__name__).log(
                {"debug": 10, "info": 20, "warning": 30, "error": 40}[level], message)

    def _control(self, request):
        sink = self._bulkhead_sink
        if sink is not None:
            sink.control(request)
        else:  # not running under the host (e.g. a plugin's own unit test): keep them for inspection
            self.__dict__.setdefault("unsent_control_requests", []).append(request)

    # ---- meta ---------------------------------------------------------------------------------
    @classmethod
    def plugin_meta(cls):
        """(name, version, description): class attributes, else the manifest's (from the environment)."""
        name = cls.name or os.environ.get("BULKHEAD_PLUGIN_NAME") or cls.__name__
        version = cls.version or os.environ.get("BULKHEAD_PLUGIN_VERSION") or "0.0.0"
        description = cls.description
        if description is None:
            description = os.environ.get("BULKHEAD_PLUGIN_DESCRIPTION") or (cls.__doc__ or "").strip().split("\n")[0]
        return str(name), str(version), str(description)

    @classmethod
    def implemented_hooks(cls):
        """The catalogue hooks this class overrides relative to BasePlugin; a batched transform too
        when it overrides the per-item one (hooks.json batch_of); get_state and set_state too when
        it names state_attributes, or when its EveryDream2-style on_model_load is replayed after a
        restart (everydream2/model.py)."""
        from .everydream2.model import uses_ed_state

        def overrides(name):
            mine = getattr(cls, name, None)
            return mine is not None and mine is not getattr(BasePlugin, name, None)

        hooks = []
        for name in catalogue.hook_names():
            item_hook = catalogue.hook(name).get("batch_of")
            if (overrides(name) or (item_hook and overrides(item_hook))
                    or (name in catalogue.state_hooks() and (cls.state_attributes or uses_ed_state(cls)))):
                hooks.append(name)
        return hooks


def make_set_arg(name, value, reason=None):
    """Build a set_arg control request, refusing what the trainer would refuse."""
    allowed = catalogue.settable_args()
    if name not in allowed:
        # EveryDream2's arg_update_callback raises for any other name; so do we.
        raise TypeError("Unrecognized arg: %s (a plugin may set only: %s)" % (name, ", ".join(allowed)))
    if isinstance(value, bool):
        raise ValueError("%s must be an integer, not a bool" % name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        value = int(value.__index__())
    except (AttributeError, TypeError):
        raise ValueError("%s must be an integer, not %r" % (name, value))
    lo, hi = catalogue.set_arg_bounds(name)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError("%s must be between %s and %s, not %d" % (name, lo, hi, value))
    req = {"action": "set_arg", "name": name, "value": value}
    if reason is not None:
        req["reason"] = str(reason)
    return req
