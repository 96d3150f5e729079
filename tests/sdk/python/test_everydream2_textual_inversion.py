"""EveryDream2's textual inversion over the Python SDK's stand-ins (bulkhead_plugin/everydream2):
a plugin written the way EveryDream2's plugins/textual_inversion.py is (its imports, its checks of
optimizer_config, tokenize / add_tokens / resize / row copies in on_model_load, batch['tokens'] in
on_step_start, row restores under no_grad in on_step_end, torch.save into save_folder), driven
hook by hook as the host drives it, restart included."""
import io
import os
import sys
import tempfile
import unittest

import numpy
import torch

from support import HOME  # noqa: F401  (puts the SDK on sys.path)

from bulkhead_plugin import BasePlugin, schema
from bulkhead_plugin.everydream2 import model as ed2_model
from bulkhead_plugin.plugin import EdState

sys.path.append(os.path.join(HOME, "plugin-sdk", "python", "bulkhead_plugin", "everydream2"))  # as the host does
from train import EveryDreamTrainingState  # noqa: E402
from utils.sample_generator import clean_filename  # noqa: E402

EMBEDDING = "caption.words.weight"
VOCABULARY = ["<pad>", "<start>", "<unknown>", "a", "blue", "circle", "red"]
WIDTH = 4


def load_kwargs(vocabulary=VOCABULARY, access=("read", "write"), values=None):
    values = numpy.arange(len(vocabulary) * WIDTH, dtype="<f4").reshape(len(vocabulary), WIDTH) if values is None else values
    rows = list(range(len(vocabulary)))
    return {"parameters": [{"name": EMBEDDING, "shape": [len(vocabulary), WIDTH], "dtype": "float32",
                            "access": list(access)}],
            "vocabulary": list(vocabulary), "embedding": EMBEDDING,
            "tensors": [{"parameter": EMBEDDING, "rows": rows,
                         "tensor": {"dtype": "float32", "shape": [len(rows), WIDTH], "data": values.tobytes()}}],
            "caption_encoder": {"layers": 1, "max_tokens": 8}, "global_step": 0, "resumed": False}


class LearnsAWord(BasePlugin):
    """Written in the shape of EveryDream2's textual_inversion.py (not a copy of it)."""

    words = [{"token": "zorblax", "initializer_word": "blue"}]

    def __init__(self):
        self.training_ids, self.seen, self.first_rows = None, None, None

    def on_model_load(self, **kwargs):
        ed_state: EveryDreamTrainingState = kwargs.get("ed_state")
        freezing = (kwargs.get("optimizer_config") or {}).get("text_encoder_freezing", {})
        layers = len(ed_state.text_encoder.text_model.encoder.layers)
        if (freezing.get("freeze_embeddings") is not False or freezing.get("freeze_final_layer_norm") is not True
                or freezing.get("unfreeze_last_n_layers", layers) > 0):
            raise RuntimeError("Misconfigured optimizer config")
        tokenizer = ed_state.tokenizer

        def ids(text):
            return tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))
        new = [w["token"] for w in self.words if len(ids(w["token"])) > 1]
        again = [w["token"] for w in self.words if w["token"] not in new]
        if tokenizer.add_tokens(new) != len(new):
            raise RuntimeError("tokens not added")
        ed_state.text_encoder.resize_token_embeddings(len(tokenizer))
        embeddings = ed_state.text_encoder.get_input_embeddings()
        for w in self.words:
            embeddings.weight.data[ids(w["token"])[0]] = embeddings.weight.data[ids(w["initializer_word"])[0]]
        self.training_ids = [ids(t)[0] for t in new + again]
        self.first_rows = embeddings.weight.data.detach().clone()

    def on_step_start(self, **kwargs):
        self.seen = torch.unique(torch.flatten(kwargs["batch"]["tokens"])).tolist()

    def on_step_end(self, **kwargs):
        embeddings = kwargs["ed_state"].text_encoder.get_input_embeddings()
        with torch.no_grad():
            for row in self.seen:
                if row not in self.training_ids:
                    embeddings.weight[row] = self.first_rows[row]

    def on_model_save(self, **kwargs):
        embeddings = kwargs["ed_state"].text_encoder.get_input_embeddings()
        folder = os.path.join(kwargs["save_folder"], "textual_inversions")
        os.makedirs(folder, exist_ok=True)
        for row, w in zip(self.training_ids, self.words):
            torch.save({w["token"]: embeddings.weight[row]}, os.path.join(folder, clean_filename(w["token"]) + ".bin"))


def step_kwargs(tokens):
    return {"batch": ed2_model.observer_batch({"captions": ["a zorblax circle"], "shape": [1, 3, 8, 8],
                                              "tokens": tokens}),
            "ed_state": EdState({"grad_accum": 1, "lr": 1e-3, "batch_size": 1}, ed2_model.step_objects())}


class TextualInversionStandIns(unittest.TestCase):
    def test_a_new_word_starts_as_its_initializer_and_alone_trains(self):
        plugin = LearnsAWord()
        reply = ed2_model.call_load(plugin.on_model_load, load_kwargs())
        self.assertEqual(reply, {"add_tokens": [{"token": "zorblax", "init_from": "blue"}],
                                 "trainable": {EMBEDDING: ["zorblax"]}, "freeze_rest": True})
        schema.validate_hook_result("on_model_load", reply)
        self.assertEqual(plugin.training_ids, [len(VOCABULARY)])

    def test_an_unknown_word_is_several_pieces_and_a_known_one_is_one(self):
        tokenizer = ed2_model.Tokenizer(VOCABULARY, 8)
        self.assertEqual(tokenizer.convert_tokens_to_ids(tokenizer.tokenize("A blue, Circle")), [3, 4, 5])
        self.assertGreater(len(tokenizer.tokenize("q")), 1)
        self.assertEqual(tokenizer("a zorblax").input_ids, [[1, 3, 2, 0, 0, 0, 0, 0]])
        with self.assertRaisesRegex(ValueError, "not one word"):
            tokenizer.add_tokens(["two words"])
        self.assertEqual(tokenizer.add_tokens(["<Zorblax>"]), 1, "a token is its one word, as captions are split")
        self.assertEqual(tokenizer.convert_tokens_to_ids(tokenizer.tokenize("zorblax")), [len(VOCABULARY)])

    def test_without_write_the_plugin_sees_frozen_embeddings_and_refuses_itself(self):
        with self.assertRaisesRegex(RuntimeError, "Misconfigured optimizer config"):
            ed2_model.call_load(LearnsAWord().on_model_load, load_kwargs(access=("read",)))

    def test_a_resumed_runs_token_keeps_training_as_trained(self):
        values = numpy.arange(8 * WIDTH, dtype="<f4").reshape(8, WIDTH)
        reply = ed2_model.call_load(LearnsAWord().on_model_load, load_kwargs(VOCABULARY + ["zorblax"], values=values))
        self.assertEqual(reply, {"add_tokens": [], "trainable": {EMBEDDING: ["zorblax"]}, "freeze_rest": True})

    def test_step_hooks_get_the_batch_tokens_and_restoring_frozen_rows_is_allowed(self):
        plugin = LearnsAWord()
        ed2_model.call_load(plugin.on_model_load, load_kwargs())
        zorblax = len(VOCABULARY)
        kwargs = step_kwargs([[1, 3, zorblax, 5, 0, 0, 0, 0]])
        plugin.on_step_start(**kwargs)
        self.assertEqual(plugin.seen, [0, 1, 3, 5, zorblax])
        plugin.on_step_end(**kwargs)  # restores rows 0, 1, 3, 5: frozen, kept by the trainer anyway
        with self.assertRaisesRegex(ValueError, r"rows \[7\] train"):
            kwargs["ed_state"].text_encoder.get_input_embeddings().weight[zorblax] = torch.zeros(WIDTH)
        with self.assertRaisesRegex(AttributeError, "ed_state.unet is not available"):
            kwargs["ed_state"].unet  # noqa: B018

    def test_the_saved_rows_load_back_with_torch(self):
        plugin = LearnsAWord()
        ed2_model.call_load(plugin.on_model_load, load_kwargs())
        zorblax = len(VOCABULARY)
        tensors = [{"parameter": EMBEDDING, "rows": [zorblax],
                    "tensor": {"dtype": "float32", "shape": [1, WIDTH], "data": numpy.full(WIDTH, 0.25, "<f4").tobytes()}}]
        with tempfile.TemporaryDirectory() as scratch:
            reply = ed2_model.call_save(plugin.on_model_save, {"path": "/x.pt", "reason": "final", "global_step": 3,
                                                               "tensors": tensors}, scratch)
        self.assertEqual([f["name"] for f in reply["files"]], ["textual_inversions/zorblax.bin"])
        learnt = torch.load(io.BytesIO(reply["files"][0]["data"]))
        self.assertEqual(learnt["zorblax"].tolist(), [0.25] * WIDTH)

    def test_a_restarted_host_replays_on_model_load_from_the_kept_state(self):
        self.assertTrue(ed2_model.uses_ed_state(LearnsAWord))
        self.assertIn("get_state", LearnsAWord.implemented_hooks())
        first = LearnsAWord()
        ed2_model.call_load(first.on_model_load, load_kwargs())
        state = ed2_model.replay_state()
        self.assertIsNone(schema.validate_hook_result("get_state", {"state": state}))
        ed2_model._loaded.update(kwargs=None, vocabulary=[], trainable=[])  # a new host knows nothing
        second = LearnsAWord()
        ed2_model.replay(second, state)
        self.assertEqual(second.training_ids, first.training_ids)
        self.assertTrue(torch.equal(second.first_rows, first.first_rows))
        self.assertEqual(ed2_model.step_objects()["tokenizer"].convert_tokens_to_ids("zorblax"), len(VOCABULARY))

    def test_a_class_with_state_of_its_own_is_not_replayed(self):
        class Keeps(LearnsAWord):
            state_attributes = ("training_ids",)

        class BulkheadStyle(BasePlugin):
            def on_model_load(self, vocabulary, embedding, **kwargs):
                return None
        self.assertFalse(ed2_model.uses_ed_state(Keeps))
        self.assertFalse(ed2_model.uses_ed_state(BulkheadStyle))
        self.assertNotIn("get_state", BulkheadStyle.implemented_hooks())


if __name__ == "__main__":
    unittest.main()
