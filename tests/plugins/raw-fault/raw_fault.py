#!/usr/bin/python3
"""raw-fault (test plugin): misbehaves on the wire, written against the raw protocol (zmq + msgpack only).

Handshake-time faults cannot come from options (options arrive in the welcome), so the mode is
read from the plugin's name, BULKHEAD_PLUGIN_NAME, set from each manifest:

  raw-fault                 behaves; the "fault" option picks what its hooks do (below)
  raw-fault-no-hello        connects and never says hello
  raw-fault-late-hello      says hello after 11 s (the trainer waits 10 s)
  raw-fault-bad-version     says hello with protocol 99
  raw-fault-future-versions says it speaks protocols 3 and 4 only ("protocols": [3, 4])
  raw-fault-versions-range  says it speaks protocols 2 and 3 ("protocols": [2, 3])
  raw-fault-wrong-password  connects with a PLAIN password that is not its token
  raw-fault-bad-token       says hello with a token that is not the one it was given
  raw-fault-bad-hello       says hello with params that break hello.schema.json
  raw-fault-exit-load       exits 78 at once (a load failure)
  raw-fault-hello-notification  sends its hello as a notification [2, "hello", {...}]
  raw-fault-hello-short     sends its hello as [0, 0, "hello"], without params
  raw-fault-hello-typo      its hello lists "on_step_ned" instead of "on_step_end"
  raw-fault-manifest-typo   behaves; its manifest declares "on_step_ned" instead of "on_step_end"
  raw-fault-nil-unknown     answers a method it does not know with nil, not the error unknown_method
  raw-fault-undeclared-unknown  answers a catalogue hook it did not declare with the error
                            unknown_method, not nil
  raw-fault-bad-control     every observer reply, and a control notification after each, asks
                            for something control.schema.json does not allow
  raw-fault-exit-3          exits with status 3 on shutdown
  raw-fault-once-MODE       the first start in a run (marker file in BULKHEAD_SCRATCH_DIR) behaves
                            like raw-fault; every later start (a restart) does MODE

Options of raw-fault (all hooks it implements: transform_caption, transform_pil_image, on_step_end,
on_epoch_start):
  fault: none | garbage | schema | wrong_type | nan | inf | nan_control | huge | unsolicited | duplicate
         | flood | error | unknown_id | truncated | envelope | exit | exit78 | hang
         | bad_utf8 | long_caption (transform_caption) | wrong_mode (transform_pil_image)
         | attached | attachment_missing | attachment_unnamed | attachment_twice | attachment_ext
         | attachment_short (transform_pil_image: the image's pixels as an attachment frame,
           docs/protocol.md section 2.1: right, or named wrongly)
  every: misbehave on every k-th call (default 1)

A reply is a list of messages; a message is one frame (bytes) or a list of frames (multipart).
"""
import math
import os
import struct
import sys
import threading
import time

import msgpack
import zmq

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2
HOOKS = ["transform_caption", "transform_pil_image", "on_step_end", "on_epoch_start"]
# The catalogue's other hooks (schemas/hooks.json), which it does not declare: answered with nil.
OTHER_HOOKS = ["on_training_start", "on_step_start", "on_epoch_end", "on_training_end", "on_checkpoint_saved",
               "on_validation_end", "on_log", "get_state", "set_state",
               "describe_method", "suggest_trial", "on_trial_start", "on_trial_end", "evaluate", "on_study_end",
               "on_model_load", "on_model_step", "on_model_save"]


# Hooks newer than this plugin's first version: answered unknown_method, as a plugin written before
# them does (docs/protocol.md 3.1); the trainer sends it their per-item hooks instead.
NEWER_HOOKS = ["transform_captions", "transform_pil_images"]


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def watch_parent():
    first = os.getppid()
    while True:
        time.sleep(0.2)
        if os.getppid() != first:
            os._exit(1)


def good_result(method, params):
    if method == "transform_caption":
        return {"caption": params["caption"]}
    if method == "transform_pil_image":
        return {"image": params["image"]}
    return None


UNKNOWN = {"code": "unknown_method", "message": "unknown method"}
# Out of control.schema.json: set_arg accepts only grad_accum, an integer.
BAD_CONTROL = [{"action": "set_arg", "name": "learning_rate", "value": "fast"}]


def answer(sock, mode, fault, msg_id, method, params):
    """The frames that answer one request, as the mode and the fault option make them."""
    if method in OTHER_HOOKS:
        return [pack([RESPONSE, msg_id, UNKNOWN if mode == "undeclared-unknown" else None, None])]
    if method not in HOOKS:
        return [pack([RESPONSE, msg_id, None if mode == "nil-unknown" else UNKNOWN, None])]
    if mode == "bad-control" and good_result(method, params) is None:
        return [pack([RESPONSE, msg_id, None, {"control": BAD_CONTROL}]),
                pack([NOTIFICATION, "control", {"requests": BAD_CONTROL}])]
    return bad_reply(sock, fault, msg_id, method, params)


def bad_reply(sock, fault, msg_id, method, params):
    """The frames to send instead of a good reply."""
    good = [RESPONSE, msg_id, None, good_result(method, params)]
    if fault == "garbage":
        return [b"\xc1\xc1 this is not MessagePack \xff"]
    if fault == "truncated":
        return [pack(good)[:-3]]
    if fault == "schema":
        # valid MessagePack, valid envelope, result breaks the hook's schema
        if method == "transform_caption":
            return [pack([RESPONSE, msg_id, None, {"text": params["caption"]}])]
        if method == "transform_pil_image":
            return [pack([RESPONSE, msg_id, None, {"picture": 1}])]
        return [pack([RESPONSE, msg_id, None, {"unexpected": True}])]
    if fault == "wrong_type":
        if method == "transform_caption":
            return [pack([RESPONSE, msg_id, None, {"caption": 42}])]
        if method == "transform_pil_image":
            image = dict(params["image"])
            image["width"] = "wide"
            return [pack([RESPONSE, msg_id, None, {"image": image}])]
        return [pack([RESPONSE, msg_id, None, ["not", "an", "object"]])]
    if fault == "envelope":
        return [pack({"kind": "response", "id": msg_id})]
    if fault == "nan":
        if method == "transform_caption":
            return [pack([RESPONSE, msg_id, None, {"caption": params["caption"], "control": [
                {"action": "set_arg", "name": "grad_accum", "value": math.nan}]}])]
        if method == "transform_pil_image":
            image = dict(params["image"])
            image["width"] = math.nan
            return [pack([RESPONSE, msg_id, None, {"image": image}])]
        return [pack([RESPONSE, msg_id, None, {"control": [
            {"action": "set_arg", "name": "grad_accum", "value": math.nan}]}])]
    if fault == "inf":
        if method == "transform_pil_image":
            image = dict(params["image"])
            image["height"] = math.inf
            return [pack([RESPONSE, msg_id, None, {"image": image}])]
        return [pack([RESPONSE, msg_id, None, {"caption": params.get("caption", ""), "control": [
            {"action": "set_arg", "name": "grad_accum", "value": -math.inf}]}])]
    if fault == "bad_utf8" and method == "transform_caption":
        # msgpack-python packs only valid str: pack a stand-in of the same length, then swap the bytes
        stand_in = "BAD-UTF8"
        return [pack([RESPONSE, msg_id, None, {"caption": stand_in}]).replace(stand_in.encode(), b"\xff\xfe\xfd\xfc\xc3\x28\xa0\xa1")]
    if fault == "long_caption" and method == "transform_caption":
        return [pack([RESPONSE, msg_id, None, {"caption": "word " * 1000}])]
    if fault == "wrong_mode" and method == "transform_pil_image":
        image = dict(params["image"])
        image["mode"] = "L"
        image["data"] = bytes(image["width"] * image["height"])
        return [pack([RESPONSE, msg_id, None, {"image": image}])]
    if fault.startswith("attach") and method == "transform_pil_image":
        return [attached_reply(fault, msg_id, params["image"])]
    if fault == "nan_control":
        # NaN in a control notification, then a good reply
        return [pack([NOTIFICATION, "control", {"requests": [
            {"action": "set_arg", "name": "grad_accum", "value": math.nan}]}]), pack(good)]
    if fault == "huge":
        return [pack([RESPONSE, msg_id, None, {"caption": "x" * (100 << 20)}])]
    if fault == "unsolicited":
        # a reply to a request never made, then the good one
        return [pack([RESPONSE, msg_id + 100000, None, good_result(method, params)]), pack(good)]
    if fault == "unknown_id":
        # only a reply to a request never made: the real one is never answered
        return [pack([RESPONSE, msg_id + 100000, None, good_result(method, params)])]
    if fault == "duplicate":
        return [pack(good), pack(good)]
    if fault == "error":
        return [pack([RESPONSE, msg_id, {"code": "hook_failed", "message": "injected error"}, None])]
    if fault == "exit":
        os._exit(3)
    if fault == "exit78":
        sock.send(pack([NOTIFICATION, "log", {"level": "error", "message": "raw-fault: cannot configure (injected)"}]))
        time.sleep(0.2)
        os._exit(78)
    if fault == "hang":
        while True:
            time.sleep(3600)
    if fault == "flood":
        out = sys.stdout
        for i in range(100000):
            out.write("flood line %d from %s\n" % (i, method))
        out.flush()
        return [pack(good)]
    return [pack(good)]


def frame_ref(number, ext_type=1):
    return msgpack.ExtType(ext_type, struct.pack(">I", number))


def attached_reply(fault, msg_id, image):
    """The image sent back with its pixels in an attachment frame, named right or wrongly."""
    pixels = image["data"]
    reply = dict(image, data=frame_ref(1))
    result = {"image": reply}
    frames = [pixels]
    if fault == "attachment_missing":
        frames = []
    elif fault == "attachment_unnamed":
        frames.append(b"nobody names me")
    elif fault == "attachment_twice":
        result["control"] = [{"action": "set_arg", "name": "grad_accum", "value": frame_ref(1)}]
    elif fault == "attachment_ext":
        reply["data"] = frame_ref(1, ext_type=7)
    elif fault == "attachment_short":
        frames = [pixels[:-1]]
    return [pack([RESPONSE, msg_id, None, result])] + frames


def main():
    name = os.environ.get("BULKHEAD_PLUGIN_NAME") or "raw-fault"
    mode = name[len("raw-fault-"):] if name.startswith("raw-fault-") else "none"
    if mode.startswith("once-"):
        marker = os.path.join(os.environ.get("BULKHEAD_SCRATCH_DIR") or "/tmp", name + ".started")
        if os.path.exists(marker):
            mode = mode[len("once-"):]
        else:
            open(marker, "w").close()
            mode = "none"
    if mode == "exit-load":
        sys.stderr.write("raw-fault: refusing to load (injected load failure)\n")
        return 78
    threading.Thread(target=watch_parent, daemon=True).start()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.plain_username = b"bulkhead"  # the token is the connection's password (docs/protocol.md)
    sock.plain_password = b"guessed" if mode == "wrong-password" else os.environ["BULKHEAD_TOKEN"].encode()
    sock.connect(os.environ["BULKHEAD_ENDPOINT"])

    if mode == "no-hello":
        while True:
            time.sleep(3600)
    if mode == "late-hello":
        time.sleep(11)
    hello = {
        "protocol": 99 if mode == "bad-version" else 4 if mode == "future-versions" else 2,
        "token": "not-the-token" if mode == "bad-token" else os.environ["BULKHEAD_TOKEN"],
        "plugin": {"name": name, "version": "1.0.0", "description": "misbehaves on the wire"},
        "hooks": HOOKS,
        "runtime": {"name": "python-raw", "version": "%d.%d.%d" % sys.version_info[:3]},
        "pid": os.getpid(),
    }
    if mode == "future-versions":
        hello["protocols"] = [3, 4]
    if mode == "versions-range":
        hello["protocols"] = [2, 3]
    if mode == "bad-hello":
        hello = {"protocol": 1, "hooks": "all of them"}
    if mode == "hello-typo":
        hello["hooks"] = [h.replace("on_step_end", "on_step_ned") for h in HOOKS]
    if mode == "hello-notification":
        sock.send(pack([NOTIFICATION, "hello", hello]))
    elif mode == "hello-short":
        sock.send(pack([REQUEST, 0, "hello"]))
    else:
        sock.send(pack([REQUEST, 0, "hello", hello]))

    options = None
    while options is None:
        if not sock.poll(30000):
            return 1
        msg = msgpack.unpackb(sock.recv(), raw=False)
        if msg[0] == RESPONSE and msg[1] == 0:
            if msg[2] is not None:
                sys.stderr.write("refused: %s\n" % msg[2].get("message"))
                return 1
            options = msg[3].get("options") or {}
    fault = str(options.get("fault", "none"))
    every = int(options.get("every", 1))
    calls = 0

    while True:
        msg = msgpack.unpackb(sock.recv(), raw=False)
        if msg[0] == NOTIFICATION:
            if msg[1] == "shutdown":
                return 3 if mode == "exit-3" else 0
            continue
        if msg[0] != REQUEST:
            continue
        _, msg_id, method, params = msg
        calls += 1
        frames = answer(sock, mode, fault if calls % every == 0 else "none", msg_id, method, params)
        for message in frames:
            if isinstance(message, list):
                sock.send_multipart(message)
            else:
                sock.send(message)


if __name__ == "__main__":
    sys.exit(main())
