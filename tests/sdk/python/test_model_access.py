"""Model access in the Python SDK (docs/protocol.md, section 9): the helpers that read the wire's
tensors and write updates, and EveryDream2's on_model_load / on_model_save mapped onto Bulkhead's,
with the code shape of EveryDream2's textual_inversion plugin."""
import os
import tempfile
import unittest

import numpy

from support import HOME  # noqa: F401  (puts the SDK on sys.path)

from bulkhead_plugin import model, schema
from bulkhead_plugin.everydream2 import model as ed2_model

EMBEDDING = "caption.words.weight"
VOCABULARY = ["<pad>", "<start>", "<unknown>", "a", "blue", "circle", "red"]


def embedding_tensor(rows=None):
    values = numpy.arange(len(VOCABULARY) * 4, dtype="<f4").reshape(len(VOCABULARY), 4)
    rows = list(range(len(VOCABULARY))) if rows is None else rows
    return [{"parameter": EMBEDDING, "rows": rows,
             "tensor": {"dtype": "float32", "shape": [len(rows), 4], "data": values[rows].tobytes()}}]


class EveryDream2TextualInversion:
    """The shape of EveryDream2's plugins/textual_inversion.py."""

    def on_model_load(self, **kwargs):
        ed_state = kwargs.get("ed_state")
        tokenizer, text_encoder = ed_state.tokenizer, ed_state.text_encoder
        self.added = tokenizer.add_tokens(["zorblax"])
        text_encoder.resize_token_embeddings(len(tokenizer))
        embeddings = text_encoder.get_input_embeddings()
        token_id = tokenizer.convert_tokens_to_ids("zorblax")
        embeddings.weight.data[token_id] = embeddings.weight.data[tokenizer.convert_tokens_to_ids("circle")]

    def on_model_save(self, **kwargs):
        ed_state, save_folder = kwargs["ed_state"], kwargs["diffusers_save_path"]
        token_id = ed_state.tokenizer.convert_tokens_to_ids("zorblax")
        row = ed_state.text_encoder.get_input_embeddings().weight.data[token_id]
        os.makedirs(os.path.join(save_folder, "textual_inversions"))
        with open(os.path.join(save_folder, "textual_inversions", "zorblax.bin"), "wb") as f:
            f.write(numpy.asarray(row, dtype="<f4").tobytes())


class ModelHelpers(unittest.TestCase):
    def test_tensors_read_and_updates_match_the_schemas(self):
        rows = model.by_parameter(embedding_tensor([5]))[EMBEDDING]
        self.assertEqual(rows.rows, [5])
        self.assertEqual(rows.values.tolist(), [[20.0, 21.0, 22.0, 23.0]])
        reply = model.updates(model.update(EMBEDDING, rows.rows, rows.values * 2, 14, mode="add"))
        schema.validate_hook_result("on_model_step", reply)
        self.assertEqual(numpy.frombuffer(reply["updates"][0]["tensor"]["data"], "<f4").tolist(), [40, 42, 44, 46])
        with self.assertRaises(ValueError):
            model.update(EMBEDDING, [5], [[0.0] * 4], 14, mode="multiply")


class SharedRegion(unittest.TestCase):
    """The SDK's side of section 9.4 on a real sealed memfd, as the trainer makes it."""

    def setUp(self):
        import fcntl
        self.fd = os.memfd_create("test-region", os.MFD_ALLOW_SEALING)
        os.ftruncate(self.fd, 2 * 4096)
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        self.addCleanup(os.close, self.fd)
        self.addCleanup(setattr, model, "REGION", None)
        model.REGION = None
        model.attach_region({"BULKHEAD_MODEL_REGION": "%d 2 4096" % self.fd})

    def test_tensors_in_the_lent_slot_are_read_and_updates_written_there(self):
        model.REGION.map[4096:4096 + 16] = numpy.arange(4, dtype="<f4").tobytes()
        params = {"global_step": 3, "tensors": [{"parameter": EMBEDDING, "rows": [5], "tensor": {
            "dtype": "float32", "shape": [1, 4], "slot": {"index": 1, "offset": 0, "bytes": 16}}}]}
        model.begin_request(params)
        rows = model.by_parameter(params["tensors"])[EMBEDDING]
        self.assertEqual(rows.values.tolist(), [[0, 1, 2, 3]])
        update = model.update(EMBEDDING, [5], rows.values + 1, 3, region=True)
        self.assertEqual(update["tensor"]["slot"], {"index": 1, "offset": 0, "bytes": 16})
        self.assertEqual(numpy.frombuffer(model.REGION.map[4096:4096 + 16], "<f4").tolist(), [1, 2, 3, 4])
        schema.validate_hook_result("on_model_step", model.updates(update))

    def test_the_region_cannot_be_resized(self):
        for size in (0, 3 * 4096):
            with self.assertRaises(PermissionError):
                os.ftruncate(self.fd, size)


class EveryDream2Mapping(unittest.TestCase):
    def test_a_copied_row_becomes_a_token_added_from_that_word(self):
        plugin = EveryDream2TextualInversion()
        kwargs = {"parameters": [], "vocabulary": VOCABULARY, "embedding": EMBEDDING, "tensors": embedding_tensor(),
                  "global_step": 0, "resumed": False}
        reply = ed2_model.call_load(plugin.on_model_load, kwargs)
        self.assertEqual(plugin.added, 1)
        self.assertEqual(reply, {"add_tokens": [{"token": "zorblax", "init_from": "circle"}],
                                 "trainable": {EMBEDDING: ["zorblax"]}, "freeze_rest": True})
        schema.validate_hook_result("on_model_load", reply)

    def test_a_row_from_nowhere_is_refused_saying_why(self):
        class Random(EveryDream2TextualInversion):
            def on_model_load(self, **kwargs):
                kwargs["ed_state"].tokenizer.add_tokens("zorblax")
        kwargs = {"vocabulary": VOCABULARY, "embedding": EMBEDDING, "tensors": embedding_tensor()}
        with self.assertRaisesRegex(ValueError, "not a copy of an existing word"):
            ed2_model.call_load(Random().on_model_load, kwargs)

    def test_files_written_to_the_save_path_are_returned(self):
        plugin = EveryDream2TextualInversion()
        ed2_model.call_load(plugin.on_model_load, {"vocabulary": VOCABULARY, "embedding": EMBEDDING,
                                                   "tensors": embedding_tensor()})
        zorblax = len(VOCABULARY)
        tensors = [{"parameter": EMBEDDING, "rows": [zorblax],
                    "tensor": {"dtype": "float32", "shape": [1, 4], "data": numpy.full(4, 0.5, "<f4").tobytes()}}]
        with tempfile.TemporaryDirectory() as scratch:
            reply = ed2_model.call_save(plugin.on_model_save, {"path": "/x.pt", "reason": "final", "global_step": 3,
                                                               "tensors": tensors}, scratch)
            self.assertEqual(os.listdir(scratch), [], "the save folder is gone")
        self.assertEqual(reply["files"][0]["name"], "textual_inversions/zorblax.bin")
        self.assertEqual(numpy.frombuffer(reply["files"][0]["data"], "<f4").tolist(), [0.5] * 4)
        schema.validate_hook_result("on_model_save", reply)

    def test_the_rest_of_ed_state_says_it_does_not_cross(self):
        state = ed2_model.EdModelState(ed2_model.Tokenizer(VOCABULARY), ed2_model.TextEncoder(None))
        with self.assertRaisesRegex(AttributeError, "ed_state.unet is not available"):
            state.unet  # noqa: B018


if __name__ == "__main__":
    unittest.main()
