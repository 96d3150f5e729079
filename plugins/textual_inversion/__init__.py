"""textual_inversion: teaches the model new words, out of process (EveryDream2's
textual_inversion.py, over Bulkhead's model access: docs/protocol.md, section 9).

Options:
  tokens:          [{"token": "zorblax", "init_from": "circle"}, ...]: the words to learn, each
                   starting from the embedding of a word the model knows. Captions that use the
                   token teach it (write them into your .txt captions).
  max_norm_ratio:  a learned row whose norm grows past this many times its starting norm is
                   scaled back, through a validated update ("add" of the change; 0: never).

Only the tokens' rows of the caption words' embedding train; everything else is frozen (the
trainer keeps it bit for bit). With each checkpoint, each token's row is saved beside it as
textual_inversions/<token>.bin (little-endian float32, embed_dim values) with
textual_inversions/<token>.json (token, init_from, global_step, shape). The checkpoint itself
carries the token too: `bulkhead sample --prompt "a zorblax ..."` draws what it learned.
"""
import json
import math

from bulkhead_plugin import BasePlugin, model


class TextualInversion(BasePlugin):
    def configure(self):
        self.tokens = [dict(t) for t in self.options.get("tokens", [])]
        if not self.tokens:
            raise ValueError("textual_inversion needs options.tokens: [{\"token\": ..., \"init_from\": ...}]")
        self.max_norm_ratio = float(self.options.get("max_norm_ratio", 3.0))
        self.embedding = None
        self.start_norms = {}  # row -> norm when training began

    def on_model_load(self, vocabulary, embedding, **kwargs):
        self.embedding = embedding
        for t in self.tokens:
            if t["init_from"] not in vocabulary and t["init_from"] not in [u["token"] for u in self.tokens]:
                raise ValueError("init_from %r is not a word the model knows" % t["init_from"])
        return {"add_tokens": [{"token": t["token"], "init_from": t["init_from"]} for t in self.tokens],
                "trainable": {embedding: [t["token"] for t in self.tokens]},
                "freeze_rest": True}

    def _norms(self, values):
        return [math.sqrt(sum(float(v) * float(v) for v in row)) for row in values]

    def on_model_step(self, global_step, tensors, **kwargs):
        if self.max_norm_ratio <= 0:
            return None
        rows = model.by_parameter(tensors).get(self.embedding or "caption.words.weight")
        if rows is None:
            return None
        norms = self._norms(rows.values)
        for row, norm in zip(rows.rows, norms):
            self.start_norms.setdefault(row, norm)
        over = [(i, row) for i, row in enumerate(rows.rows)
                if norms[i] > self.max_norm_ratio * self.start_norms[row] > 0]
        if not over:
            return None
        # As a change to add (the trainer bounds its norm), through the region slot lent with this request.
        shrink = [[float(v) * (self.max_norm_ratio * self.start_norms[row] / norms[i] - 1) for v in rows.values[i]]
                  for i, row in over]
        self.log("info", "scaled %d learned row(s) back to %.1fx their starting norm" % (len(over), self.max_norm_ratio))
        return model.updates(model.update(rows_param(self), [row for _, row in over], shrink, global_step, mode="add",
                                          region=model.REGION is not None and model.REGION.lent is not None))

    def on_model_save(self, global_step, tensors, **kwargs):
        rows = model.by_parameter(tensors).get(rows_param(self))
        if rows is None:
            return None
        files = []
        # The trainer sends this plugin's trainable rows in token order.
        for t, row, values in zip(self.tokens, rows.rows, rows.values):
            data = b"".join(_float32(v) for v in values)
            meta = {"token": t["token"], "init_from": t["init_from"], "row": row, "global_step": global_step,
                    "dtype": "float32", "shape": [len(values)]}
            files.append(model.file("textual_inversions/%s.bin" % t["token"], data))
            files.append(model.file("textual_inversions/%s.json" % t["token"], json.dumps(meta).encode()))
        return {"files": files}


def rows_param(plugin):
    return plugin.embedding or "caption.words.weight"


def _float32(value):
    import struct
    return struct.pack("<f", float(value))
