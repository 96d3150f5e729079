"""EveryDream2's model hooks, over Bulkhead's model access (docs/protocol.md, section 9).

EveryDream2 hands ``on_model_load(ed_state, optimizer_config, ...)`` and
``on_model_save(ed_state, save_folder, ...)`` its live model, and its textual_inversion.py writes
embedding rows in ``on_step_end`` too. Out of process, the host hands a plugin stand-ins instead,
and turns what the plugin did to them into the reply:

- ``ed_state.tokenizer``: ``tokenize`` (a caption's words, as the trainer splits them; a word the
  vocabulary lacks comes back as its letters and an end-of-word piece, as CLIP's BPE splits a new
  word into several pieces), ``convert_tokens_to_ids``, ``add_tokens`` (each token one word; its
  count), ``len()``, ``get_vocab()``, ``model_max_length``, and calling it (``.input_ids``).
- ``ed_state.text_encoder``: ``text_model.encoder.layers`` (the caption encoder's layers),
  ``device``, ``resize_token_embeddings(n)`` (new rows start as copies of ``<unknown>``'s) and
  ``get_input_embeddings().weight`` (``.data``): the embedding's rows, a torch tensor when the
  plugin imports torch, else numpy.
- ``optimizer_config["text_encoder_freezing"]``: what the trainer will do, from the grant (with
  ``write`` on the embedding: embeddings not frozen, no layer unfrozen, final layer norm frozen).

What on_model_load did becomes its reply: each added token starts as the word whose row was copied
into it (``init_from``); the added tokens, and existing rows it changed (a resumed run's token), are
the rows that train; everything else is frozen. In ``on_step_start`` / ``on_step_end`` the same
``ed_state.tokenizer`` and ``ed_state.text_encoder`` are there: writing a frozen row (restoring it,
as textual_inversion.py does) changes nothing, since the trainer keeps frozen rows bit for bit; a
write to a training row raises (on_model_step's updates do that). ``on_model_save`` gets
``save_folder`` (and ``diffusers_save_path``), a folder in the plugin's scratch space: every file
written under it is returned in the reply, and the trainer writes it beside the checkpoint.

A restarted host does not get on_model_load again (section 9.1): for a class whose on_model_load
takes EveryDream2's ``ed_state`` and keeps no state of its own, the SDK keeps that call's arguments
as the plugin's state (section 10) and replays it into the new host, so the plugin's attributes are
what they were. ``ed_state.unet``, ``vae``, ``optimizer`` and the rest do not cross the process
boundary: reading one raises an AttributeError that says so. A reply the method returns itself (a
dict) wins over all of this.
"""
import os
import re
import shutil
import sys
import tempfile

torch = None

UNKNOWN = 2  # the vocabulary's <unknown>: docs/protocol.md, section 9.1
END_OF_WORD = "</w>"


def _torch():
    """torch, when the plugin imported it itself (importing it here would take seconds and much
    of the jail's memory for a plugin that only needs arrays); numpy stands in otherwise."""
    global torch
    torch = sys.modules.get("torch")
    return torch


def _array(values):
    if values is None:
        return None
    if _torch():
        return torch.from_numpy(values) if hasattr(values, "dtype") else torch.tensor(values)
    return values


def _same(a, b):
    try:
        return bool((a == b).all())
    except AttributeError:
        return list(a) == list(b)


def words(text):
    """A caption's words as the trainer splits them: case-folded runs of letters and digits."""
    return re.findall(r"[^\W_]+", str(text).casefold())


class Encoded:
    def __init__(self, input_ids):
        self.input_ids = input_ids


class Tokenizer:
    def __init__(self, vocabulary, max_tokens=24):
        self.vocabulary = list(vocabulary)
        self.added = []
        self.model_max_length = max_tokens

    def tokenize(self, text):
        pieces = []
        for word in words(text):
            pieces += [word] if word in self.vocabulary else list(word) + [END_OF_WORD]
        return pieces

    def add_tokens(self, tokens):
        if isinstance(tokens, str):
            tokens = [tokens]
        added = 0
        for token in tokens:
            found = words(token)
            if len(found) != 1:
                raise ValueError("token %r is not one word as Bulkhead splits captions (letters and digits, "
                                 "case-folded): a caption could never use it" % (token,))
            if found[0] not in self.vocabulary:
                self.vocabulary.append(found[0])
                self.added.append(found[0])
                added += 1
        return added

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self.vocabulary.index(tokens) if tokens in self.vocabulary else UNKNOWN
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def __call__(self, text, max_length=None, **kwargs):
        """Captions to ids as the model reads them: <start>, the words, <pad> up to max_length."""
        length = max_length or self.model_max_length
        rows = []
        for caption in ([text] if isinstance(text, str) else text):
            ids = [1] + [self.convert_tokens_to_ids(w) for w in words(caption)][:length - 1]
            rows.append(ids + [0] * (length - len(ids)))
        if kwargs.get("return_tensors") == "pt" and _torch():
            rows = torch.tensor(rows)
        return Encoded(rows)

    def get_vocab(self):
        return {token: i for i, token in enumerate(self.vocabulary)}

    def __len__(self):
        return len(self.vocabulary)


class Weight:
    def __init__(self, data):
        self.data = data
        self.requires_grad = True

    def __getitem__(self, index):
        return self.data[index]

    def __setitem__(self, index, value):
        self.data[index] = value

    @property
    def shape(self):
        return tuple(self.data.shape)


class Embeddings:
    def __init__(self, weight):
        self.weight = weight


class Layer:
    """One of the caption encoder's layers: counted, never handed over."""

    def __repr__(self):
        return "<caption encoder layer (in the trainer's process)>"


class Namespace:
    def __init__(self, **items):
        self.__dict__.update(items)


class TextEncoder:
    def __init__(self, rows, layers=1, weight_type=Weight):
        self._rows = rows
        self._weight_type = weight_type
        self._embeddings = None
        self.text_model = Namespace(encoder=Namespace(layers=[Layer() for _ in range(layers)]))
        self.device = "cpu"

    def get_input_embeddings(self):
        if self._embeddings is None:
            self._embeddings = Embeddings(self._weight_type(_array(self._rows)))
        return self._embeddings

    def resize_token_embeddings(self, size):
        data = self.get_input_embeddings().weight.data
        grow = size - len(data)
        if grow > 0:
            new = data[UNKNOWN:UNKNOWN + 1].repeat(grow, 1) if _torch() and isinstance(data, torch.Tensor) else None
            if new is not None:
                data = torch.cat([data, new])
            else:
                import numpy
                data = numpy.concatenate([data, numpy.repeat(data[UNKNOWN:UNKNOWN + 1], grow, axis=0)])
            self._embeddings.weight.data = data
        return self._embeddings


class StepWeight:
    """The embedding in a step hook: no rows are sent there, so reads raise; a write to a frozen row
    is what the trainer does anyway (it keeps them bit for bit), a write to a training row raises."""

    def __init__(self, trainable):
        self.trainable = set(trainable)

    def _rows(self, index):
        if _torch() and isinstance(index, torch.Tensor):
            index = index.tolist()
        return [int(i) for i in (index if isinstance(index, (list, tuple)) else [index])]

    def __setitem__(self, index, value):
        training = sorted(set(self._rows(index)) & self.trainable)
        if training:
            raise ValueError("rows %s train: a step hook cannot write them (return updates from on_model_step: "
                             "docs/protocol.md, section 9.2)" % training)

    def __getitem__(self, index):
        raise ValueError("the embedding's rows are not sent to step hooks: read them in on_model_step or "
                         "on_model_save (docs/protocol.md, section 9)")

    @property
    def data(self):
        return self


class EdModelState:
    """EveryDream2's ed_state for its model hooks, as far as it crosses a process boundary."""

    def __init__(self, tokenizer, text_encoder):
        object.__setattr__(self, "tokenizer", tokenizer)
        object.__setattr__(self, "text_encoder", text_encoder)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            "ed_state.%s is not available: Bulkhead plugins run out of process; model access gives them "
            "ed_state.tokenizer and ed_state.text_encoder (its input embeddings) only (docs/protocol.md, section 9)"
            % name)


def embedding_rows(tensors, embedding, size):
    """The embedding as an array of `size` rows from the tensors sent (rows not sent are zero)."""
    from .. import model as wire_model  # numpy: imported when a model hook first needs it
    rows = wire_model.by_parameter(tensors).get(embedding)
    if rows is None:
        return None
    import numpy
    width = len(rows.values[0]) if len(rows.rows) else 0
    full = numpy.zeros((max(size, max(rows.rows) + 1 if rows.rows else 0), width), dtype="<f4")
    for i, row in enumerate(rows.rows):
        full[row] = rows.values[i]
    return full


def optimizer_config(kwargs):
    """EveryDream2's text_encoder_freezing for what the trainer will do: with write on the embedding,
    only the rows the plugin names train (no layer, no final layer norm)."""
    embedding = kwargs.get("embedding", "")
    writes = any(p.get("name") == embedding and "write" in p.get("access", []) for p in kwargs.get("parameters", []))
    return {"text_encoder_freezing": {"freeze_embeddings": not writes, "unfreeze_last_n_layers": 0,
                                      "freeze_final_layer_norm": True}}


def load_reply(state, original, embedding):
    """What on_model_load did to the stand-ins, as its reply (None if nothing)."""
    tokenizer, data = state.tokenizer, state.text_encoder.get_input_embeddings().weight.data
    if tokenizer.added and data is None:
        raise ValueError("new tokens %s need the embedding's rows, which the plugin's model_access does not let "
                         "it read (grant \"read\" on %s)" % (tokenizer.added, embedding))
    if data is None:
        return None
    known = len(original)
    tokens = []
    for token in tokenizer.added:
        row = tokenizer.vocabulary.index(token)
        init = next((tokenizer.vocabulary[i] for i in range(known) if row < len(data) and _same(data[row], original[i])),
                    None)
        if init is None:
            raise ValueError("token %r: its embedding row is not a copy of an existing word's; Bulkhead starts a "
                             "new token from a word (copy one into weight.data[%d])" % (token, row))
        tokens.append({"token": token, "init_from": init})
    changed = [tokenizer.vocabulary[i] for i in range(min(known, len(data))) if not _same(data[i], original[i])]
    if not tokens and not changed:
        return None
    # A changed existing row is a token the plugin trains again (a resumed run's): the trainer keeps
    # it as trained rather than take the plugin's copy.
    return {"add_tokens": tokens, "trainable": {embedding: [t["token"] for t in tokens] + changed}, "freeze_rest": True}


# What on_model_load saw and decided: the vocabulary it left (what later hooks' tokenizer knows),
# the rows that train, and its arguments (replayed into a restarted host).
_loaded = {"vocabulary": [], "trainable": [], "max_tokens": 24, "layers": 1, "kwargs": None}


def _stand_ins(vocabulary, rows, caption_encoder):
    layers, max_tokens = caption_encoder.get("layers", 1), caption_encoder.get("max_tokens", 24)
    return EdModelState(Tokenizer(vocabulary, max_tokens), TextEncoder(rows, layers))


def call_load(fn, kwargs):
    """Runs an EveryDream2-style on_model_load; returns its reply."""
    vocabulary, embedding = kwargs.get("vocabulary", []), kwargs.get("embedding", "")
    encoder = kwargs.get("caption_encoder", {})
    rows = embedding_rows(kwargs.get("tensors", []), embedding, len(vocabulary))
    # The plugin changes the stand-ins' copy; the rows as sent are what its changes are told from.
    state = _stand_ins(vocabulary, None if rows is None else rows.copy(), encoder)
    original = _array(rows)
    out = fn(ed_state=state, resume_ckpt=None, optimizer_config=optimizer_config(kwargs), disable_unet_training=True,
             disable_textenc_training=False, **kwargs)
    reply = out if isinstance(out, dict) else load_reply(state, original, embedding)
    added = [t["token"] for t in (reply or {}).get("add_tokens", []) if t["token"] not in vocabulary]
    trainable = (reply or {}).get("trainable", {}).get(embedding, [])
    full = list(vocabulary) + added
    _loaded.update(vocabulary=full, kwargs=dict(kwargs), layers=encoder.get("layers", 1),
                   max_tokens=encoder.get("max_tokens", 24),
                   trainable=[full.index(r) if isinstance(r, str) and r in full else r for r in trainable])
    return reply


def uses_ed_state(cls):
    """True when the class's on_model_load takes EveryDream2's ed_state (a name in its code), and the
    class keeps no state of its own: its on_model_load is replayed into a restarted host."""
    from ..plugin import BasePlugin
    fn = getattr(cls, "on_model_load", None)
    if fn is None or fn is BasePlugin.on_model_load or cls.state_attributes:
        return False
    if cls.get_state is not BasePlugin.get_state or cls.set_state is not BasePlugin.set_state:
        return False
    code = getattr(getattr(fn, "__wrapped__", fn), "__code__", None)
    return code is not None and ("ed_state" in code.co_consts or "ed_state" in code.co_varnames)


def replay_state():
    """The plugin state kept for a replaying class: on_model_load's arguments (plain data)."""
    return {"everydream2_on_model_load": _loaded["kwargs"]}


def replay(plugin, state):
    """set_state for a replaying class: its on_model_load again, with the arguments it had; the
    reply was applied by the trainer already and is dropped."""
    if not isinstance(state, dict) or set(state) != {"everydream2_on_model_load"}:
        raise ValueError("the state is not the on_model_load arguments this SDK keeps for an EveryDream2 plugin")
    if state["everydream2_on_model_load"] is not None:
        call_load(plugin.on_model_load, state["everydream2_on_model_load"])


def step_objects():
    """ed_state's objects in step hooks, once on_model_load ran: its tokenizer and text encoder."""
    if _loaded["kwargs"] is None:
        return {}
    return {"tokenizer": Tokenizer(_loaded["vocabulary"], _loaded["max_tokens"]),
            "text_encoder": TextEncoder(None, _loaded["layers"], weight_type=lambda _: StepWeight(_loaded["trainable"]))}


def observer_batch(batch):
    """A step hook's batch: its token ids as a torch tensor when the plugin imported torch (EveryDream2's
    batch['tokens'] is one)."""
    if isinstance(batch, dict) and "tokens" in batch and _torch():
        batch = dict(batch, tokens=torch.tensor(batch["tokens"], dtype=torch.int64))
    return batch


def call_save(fn, kwargs, scratch):
    """Runs an EveryDream2-style on_model_save with a save_folder; returns the files written there."""
    from .. import model as wire_model
    tensors = kwargs.get("tensors", [])
    embedding = next((t["parameter"] for t in tensors), "")
    vocabulary = _loaded["vocabulary"]
    state = _stand_ins(vocabulary, embedding_rows(tensors, embedding, len(vocabulary)),
                       {"layers": _loaded["layers"], "max_tokens": _loaded["max_tokens"]})
    folder = tempfile.mkdtemp(prefix="save_folder-", dir=scratch or None)
    try:
        out = fn(ed_state=state, save_folder=folder, diffusers_save_path=folder, **kwargs)
        if isinstance(out, dict):
            return out
        files = []
        for root, _, names in os.walk(folder):
            for name in sorted(names):
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    files.append(wire_model.file(os.path.relpath(path, folder), f.read()))
        return {"files": files} if files else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
