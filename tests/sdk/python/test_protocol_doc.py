"""docs/protocol.md and schemas/ describe the same protocol: every example message in the document
is parsed and validated against the schemas, in the conversation it appears in."""
import binascii
import json
import os
import re
import unittest

from support import HOME, catalogue

from bulkhead_plugin import schema

DOC = os.path.join(HOME, "docs", "protocol.md")


def blocks():
    """The ```json blocks of the document, with the line each starts on."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    for match in re.finditer(r"```json\n(.*?)```", text, re.S):
        yield text[:match.start()].count("\n") + 1, match.group(1)


def to_json(block):
    """The document's notation as JSON: MessagePack's nil, bin(hex) and "…" placeholders."""
    block = re.sub(r"\bnil\b", "null", block)
    return re.sub(r"bin\(([0-9a-f ]*)\)", lambda m: json.dumps({"$bin": m.group(1).replace(" ", "")}), block)


def with_bytes(value):
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return binascii.unhexlify(value["$bin"])
        return {k: with_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [with_bytes(v) for v in value]
    return value


def values(block):
    """Each top-level JSON value of a block (several per block, one or more lines each)."""
    decoder = json.JSONDecoder()
    text, at = to_json(block), 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return
        value, at = decoder.raw_decode(text, at)
        yield with_bytes(value)


class ProtocolDocTest(unittest.TestCase):
    def check_message(self, msg, requests):
        schema.validate(msg, "protocol/envelope.schema.json", what="envelope")
        kind = msg[0]
        if kind == 0:
            _, msg_id, method, params = msg
            requests[msg_id] = method
            if method == "hello":
                schema.validate(params, "protocol/hello.schema.json", what="hello")
            else:
                self.assertIn(method, catalogue.hook_names())
                schema.validate_hook_params(method, params)
        elif kind == 1:
            _, msg_id, error, result = msg
            if error is not None:
                schema.validate(error, "protocol/error.schema.json", what="error")
            elif msg_id == 0:
                schema.validate(result, "protocol/welcome.schema.json", what="welcome")
            elif msg_id in requests:
                schema.validate_hook_result(requests[msg_id], result)
        else:
            _, method, params = msg
            name = {"control": "control-notification", "log": "log", "shutdown": "shutdown"}[method]
            schema.validate(params, "protocol/%s.schema.json" % name, what=method)

    def test_every_example_matches_the_schemas(self):
        checked = set()
        for line, block in blocks():
            requests = {}
            for value in values(block):
                with self.subTest(line=line, example=repr(value)[:80]):
                    if isinstance(value, list):
                        self.check_message(value, requests)
                        checked.add(("message", value[0]))
                    elif "plugins" in value:
                        for entry in value["plugins"]:
                            schema.validate(entry, "plugin-entry.schema.json", what="train.json plugin entry")
                        checked.add(("train.json", "plugins"))
                    elif value.get("action"):
                        schema.validate([value], "protocol/control.schema.json", what="control request")
                        checked.add(("control", value["action"]))
                    else:
                        self.fail("an example that is neither a message, a control request nor train.json's plugins")
        # The document shows every message kind and every control action.
        self.assertTrue({("message", 0), ("message", 1), ("message", 2)} <= checked, checked)
        actions = {("control", a) for a in ("stop", "save_checkpoint", "set_arg")}
        self.assertTrue(actions <= checked, checked)

    def test_a_wrong_example_would_be_caught(self):
        requests = {}
        with self.assertRaises(schema.MessageError):
            self.check_message([0, 9, "transform_caption", {"text": "a red square"}], requests)
        with self.assertRaises(schema.MessageError):
            self.check_message([1, 0, None, {"options": {}}], requests)


if __name__ == "__main__":
    unittest.main()
