"""Validate protocol messages against Bulkhead's schemas/ (draft-07, python3-jsonschema).

$refs between schema files resolve by file name (``control.schema.json`` and
``protocol/control.schema.json`` both name schemas/protocol/control.schema.json).
``"x-msgpack": "bin"`` marks a value that must be a MessagePack bin (Python bytes).

Command line (used by the Node SDK's tests): reads base64 lines, each one ZeroMQ frame a
plugin sent, and validates them in order as a plugin->trainer conversation:

    /usr/bin/python3 -m bulkhead_plugin.schema < frames.b64
"""
import base64
import functools
import json
import os
import sys

import jsonschema

from . import catalogue


class MessageError(Exception):
    pass


@functools.lru_cache(maxsize=None)
def _store():
    root = catalogue.schemas_dir()
    store = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".json"):
                continue
            full = os.path.join(dirpath, f)
            with open(full, encoding="utf-8") as fh:
                doc = json.load(fh)
            if isinstance(doc, dict):
                # Every file is draft-07; without "$schema" a $ref keeps our extended validator
                # (with it, jsonschema switches to plain Draft7Validator and drops x-msgpack).
                doc.pop("$schema", None)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            store[rel] = doc
            store[f] = doc
            if isinstance(doc, dict) and "$id" in doc:
                store[doc["$id"]] = doc
    return store


def _check_bin(validator, value, instance, schema):
    if value == "bin" and not isinstance(instance, (bytes, bytearray)):
        yield jsonschema.ValidationError("must be a MessagePack bin, not %s" % type(instance).__name__)


_Validator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"x-msgpack": _check_bin})


def _is_array(checker, instance):
    return isinstance(instance, (list, tuple))


_Validator = jsonschema.validators.extend(
    _Validator, type_checker=_Validator.TYPE_CHECKER.redefine("array", _is_array))


def validator(document_name, schema=None):
    """A validator for ``schema`` (default: the whole document) whose refs resolve from document_name."""
    store = _store()
    doc = store[document_name]
    resolver = jsonschema.RefResolver(base_uri=document_name, referrer=doc, store=store)
    return _Validator(schema if schema is not None else doc, resolver=resolver)


def validate(instance, document_name, schema=None, what=None):
    errors = sorted(validator(document_name, schema).iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        raise MessageError("%s does not match %s%s: %s (at %s)" % (
            what or "message", document_name, "" if schema is None else " (part)", e.message,
            "/".join(str(p) for p in e.absolute_path) or "top"))


def validate_hook_params(hook, params):
    validate(params, "hooks.json", catalogue.hook(hook)["params"], "params of %s" % hook)


def validate_hook_result(hook, result):
    validate(result, "hooks.json", catalogue.hook(hook)["result"], "result of %s" % hook)


class Conversation:
    """Checks what a plugin sends, message by message, knowing which hook each request id was for."""

    def __init__(self):
        self.said_hello = False
        self.pending = {}  # id -> hook, for requests the trainer sent

    def trainer_sent(self, msg):
        if isinstance(msg, list) and len(msg) == 4 and msg[0] == 0:
            self.pending[msg[1]] = msg[2]

    def plugin_sent(self, msg):
        validate(msg, "protocol/envelope.schema.json", what="envelope")
        kind = msg[0]
        if kind == 0:
            if msg[2] != "hello" or msg[1] != 0:
                raise MessageError("a plugin sends only one request, hello with id 0; got %r id %r" % (msg[2], msg[1]))
            if self.said_hello:
                raise MessageError("hello sent twice")
            validate(msg[3], "protocol/hello.schema.json", what="hello params")
            for h in msg[3]["hooks"]:
                if h not in catalogue.hook_names():
                    raise MessageError("hello declares %r, which is not in hooks.json" % h)
            self.said_hello = True
        elif kind == 1:
            if not self.said_hello:
                raise MessageError("response before hello")
            hook = self.pending.pop(msg[1], None)
            if msg[2] is not None:
                validate(msg[2], "protocol/error.schema.json", what="error")
                if msg[3] is not None:
                    raise MessageError("an error response must have a nil result")
            elif hook is not None and hook in catalogue.hook_names():
                validate_hook_result(hook, msg[3])
        else:
            method, params = msg[1], msg[2]
            if method == "log":
                validate(params, "protocol/log.schema.json", what="log params")
            elif method == "control":
                if not self.said_hello:
                    raise MessageError("control before hello")
                validate(params, "protocol/control-notification.schema.json", what="control params")
            else:
                raise MessageError("a plugin does not send %r notifications" % method)


def main():
    import msgpack
    conv = Conversation()
    n = 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        direction, _, b64 = line.partition(" ")
        msg = msgpack.unpackb(base64.b64decode(b64), raw=False, strict_map_key=False)
        if direction == "T":
            conv.trainer_sent(msg)
            continue
        n += 1
        try:
            conv.plugin_sent(msg)
        except MessageError as e:
            print("message %d %r: %s" % (n, msg if len(repr(msg)) < 300 else repr(msg)[:300], e))
            return 1
    print("ok: %d plugin messages valid" % n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
