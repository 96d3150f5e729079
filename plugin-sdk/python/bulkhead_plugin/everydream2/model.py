"""EveryDream2's on_model_load / on_model_save, over Bulkhead's model access (docs/protocol.md, section 9).

EveryDream2 (its textual-inversion branch, PR #248) hands these hooks its live model:
``on_model_load(ed_state, resume_ckpt, optimizer_config, disable_unet_training,
disable_textenc_training)`` and ``on_model_save(ed_state, diffusers_save_path)``. Out of process,
the host hands a plugin stand-ins instead, and turns what the plugin did to them into the reply:

- ``ed_state.tokenizer``: ``add_tokens``, ``convert_tokens_to_ids``, ``len()``, ``get_vocab()``;
  the vocabulary is the trainer's caption vocabulary.
- ``ed_state.text_encoder``: ``resize_token_embeddings(n)`` and
  ``get_input_embeddings().weight`` (``.data``), the embedding's rows as an array (a torch tensor
  when the plugin imports torch, else numpy). Copying an existing word's row into a new token's row
  (``weight.data[new_id] = weight.data[init_id]``, as textual inversion does) becomes
  ``add_tokens`` with that word as ``init_from``; the new tokens become the rows that train, and
  everything else is frozen.
- ``diffusers_save_path``: a folder in the plugin's scratch space; every file written under it is
  returned in the reply, and the trainer writes it beside the checkpoint.
- ``optimizer_config`` is an empty dict (what it would change is decided by the reply:
  everything but the new tokens is frozen), ``disable_unet_training`` is True,
  ``disable_textenc_training`` False, ``resume_ckpt`` None.

``ed_state.unet``, ``vae``, ``optimizer`` and the rest do not cross the process boundary: reading
one raises an AttributeError that says so. A reply the method returns itself (a dict) wins over
all of this.
"""
import os
import shutil
import sys
import tempfile

from .. import model as wire_model

torch = None


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


class Tokenizer:
    def __init__(self, vocabulary):
        self.vocabulary = list(vocabulary)
        self.added = []

    def add_tokens(self, tokens):
        if isinstance(tokens, str):
            tokens = [tokens]
        added = 0
        for token in tokens:
            token = str(token)
            if token not in self.vocabulary:
                self.vocabulary.append(token)
                self.added.append(token)
                added += 1
        return added

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self.vocabulary.index(tokens) if tokens in self.vocabulary else 2  # <unknown>
        return [self.convert_tokens_to_ids(t) for t in tokens]

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


class TextEncoder:
    def __init__(self, rows):
        self._rows = rows
        self._embeddings = None

    def get_input_embeddings(self):
        if self._embeddings is None:
            self._embeddings = Embeddings(Weight(_array(self._rows)))
        return self._embeddings

    def resize_token_embeddings(self, size):
        data = self.get_input_embeddings().weight.data
        grow = size - len(data)
        if grow > 0:
            if _torch() and isinstance(data, torch.Tensor):
                data = torch.cat([data, torch.zeros((grow,) + tuple(data.shape[1:]), dtype=data.dtype)])
            else:
                import numpy
                data = numpy.concatenate([data, numpy.zeros((grow,) + tuple(data.shape[1:]), dtype=data.dtype)])
            self._embeddings.weight.data = data
        return self._embeddings


class EdModelState:
    """EveryDream2's ed_state for on_model_load / on_model_save, as far as it crosses a process boundary."""

    def __init__(self, vocabulary, embedding_rows):
        object.__setattr__(self, "tokenizer", Tokenizer(vocabulary))
        object.__setattr__(self, "text_encoder", TextEncoder(embedding_rows))
        object.__setattr__(self, "_original", len(vocabulary))

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            "ed_state.%s is not available: Bulkhead plugins run out of process; model access gives them "
            "ed_state.tokenizer and ed_state.text_encoder.get_input_embeddings() only (docs/protocol.md, section 9)"
            % name)

    def load_reply(self, embedding):
        """What the plugin did, as an on_model_load reply (None if nothing)."""
        added = self.tokenizer.added
        if not added:
            return None
        data = self.text_encoder.get_input_embeddings().weight.data
        if data is None:
            raise ValueError("new tokens %s need the embedding's rows, which the plugin's model_access does not let "
                             "it read (grant \"read\" on %s)" % (added, embedding))
        tokens = []
        for token in added:
            row = self.tokenizer.vocabulary.index(token)
            init = next((self.tokenizer.vocabulary[i] for i in range(self._original) if row < len(data)
                         and _same(data[row], data[i])), None)
            if init is None:
                raise ValueError("token %r: its embedding row is not a copy of an existing word's; Bulkhead starts a "
                                 "new token from a word (copy one into weight.data[%d])" % (token, row))
            tokens.append({"token": token, "init_from": init})
        return {"add_tokens": tokens, "trainable": {embedding: list(added)}, "freeze_rest": True}


def embedding_rows(tensors, embedding, size):
    """The embedding as an array of `size` rows from the tensors sent (rows not sent are zero)."""
    rows = wire_model.by_parameter(tensors).get(embedding)
    if rows is None:
        return None
    import numpy
    width = len(rows.values[0]) if len(rows.rows) else 0
    full = numpy.zeros((max(size, max(rows.rows) + 1 if rows.rows else 0), width), dtype="<f4")
    for i, row in enumerate(rows.rows):
        full[row] = rows.values[i]
    return full


_loaded = {"vocabulary": []}  # on_model_load's vocabulary, with the tokens added: what on_model_save's tokenizer knows


def call_load(fn, kwargs):
    """Runs an EveryDream2-style on_model_load; returns its reply."""
    vocabulary, embedding = kwargs.get("vocabulary", []), kwargs.get("embedding", "")
    state = EdModelState(vocabulary, embedding_rows(kwargs.get("tensors", []), embedding, len(vocabulary)))
    out = fn(ed_state=state, resume_ckpt=None, optimizer_config={}, disable_unet_training=True,
             disable_textenc_training=False, **kwargs)
    reply = out if isinstance(out, dict) else state.load_reply(embedding)
    _loaded["vocabulary"] = list(vocabulary) + [t["token"] for t in (reply or {}).get("add_tokens", [])
                                                 if t["token"] not in vocabulary]
    return reply


def call_save(fn, kwargs, scratch):
    """Runs an EveryDream2-style on_model_save with a diffusers_save_path; returns the files written there."""
    rows = wire_model.by_parameter(kwargs.get("tensors", []))
    embedding = next(iter(rows), "")
    vocabulary = _loaded["vocabulary"]
    state = EdModelState(vocabulary, embedding_rows(kwargs.get("tensors", []), embedding, len(vocabulary)))
    folder = tempfile.mkdtemp(prefix="save_folder-", dir=scratch or None)
    try:
        out = fn(ed_state=state, diffusers_save_path=folder, **kwargs)
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
