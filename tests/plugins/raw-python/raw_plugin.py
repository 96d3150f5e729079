#!/usr/bin/python3
"""A Bulkhead plugin written straight from docs/protocol.md: no SDK, only zmq and msgpack.

It implements transform_caption (appends the "suffix" option) and on_step_end (asks the trainer
to stop once global_step reaches the "stop_at_step" option, if set).
"""
import os
import sys
import threading
import time
import traceback

import msgpack
import zmq

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2
# The catalogue's other observers (schemas/hooks.json): not declared, answered with nil
# (docs/protocol.md 3.1); the other transforms return their input unchanged. It lists no batched
# transform (transform_captions): the trainer sends it one transform_caption per sample.
UNDECLARED_TRANSFORMS = {"transform_pil_image", "transform_captions", "transform_pil_images"}
UNDECLARED_OBSERVERS = {"on_training_start", "on_epoch_start", "on_step_start", "on_epoch_end", "on_training_end",
                        "on_checkpoint_saved", "on_validation_end", "on_log", "get_state", "set_state",
                        "describe_method", "suggest_trial", "on_trial_start", "on_trial_end", "evaluate", "on_study_end",
                        "on_model_load", "on_model_step", "on_model_save"}


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def watch_parent():
    parent = int(os.environ.get("BULKHEAD_PARENT_PID") or 0)
    first = os.getppid()
    while True:
        time.sleep(0.2)
        gone = os.getppid() != first
        if parent and not gone:
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                gone = True
            except PermissionError:
                pass
        if gone:
            os._exit(1)


def main():
    threading.Thread(target=watch_parent, daemon=True).start()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.plain_username = b"bulkhead"  # the token is the connection's password (docs/protocol.md)
    sock.plain_password = os.environ["BULKHEAD_TOKEN"].encode()
    sock.connect(os.environ["BULKHEAD_ENDPOINT"])

    sock.send(pack([REQUEST, 0, "hello", {
        "protocol": 2,
        "token": os.environ["BULKHEAD_TOKEN"],
        "plugin": {"name": os.environ.get("BULKHEAD_PLUGIN_NAME") or "raw-python",
                   "version": os.environ.get("BULKHEAD_PLUGIN_VERSION") or "1.0.0",
                   "description": "A plugin with no SDK"},
        "hooks": ["transform_caption", "on_step_end"],
        "runtime": {"name": "python-raw", "version": "%d.%d.%d" % sys.version_info[:3]},
        "pid": os.getpid(),
    }]))

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
    suffix = str(options.get("suffix", ""))
    stop_at = options.get("stop_at_step")

    while True:
        msg = msgpack.unpackb(sock.recv(), raw=False)
        if msg[0] == NOTIFICATION:
            if msg[1] == "shutdown":
                return 0
            continue
        if msg[0] != REQUEST:
            continue
        _, msg_id, method, params = msg
        try:
            if method == "transform_caption":
                reply = [RESPONSE, msg_id, None, {"caption": params["caption"] + suffix}]
            elif method == "on_step_end":
                result = None
                if stop_at is not None and params["global_step"] >= stop_at:
                    result = {"control": [{"action": "stop", "reason": "reached step %d" % stop_at}]}
                    sock.send(pack([NOTIFICATION, "log", {"level": "info", "message": "asking to stop at step %d" % params["global_step"]}]))
                reply = [RESPONSE, msg_id, None, result]
            elif method in UNDECLARED_OBSERVERS:
                reply = [RESPONSE, msg_id, None, None]
            elif method in UNDECLARED_TRANSFORMS:
                reply = [RESPONSE, msg_id, None, params]
            else:
                reply = [RESPONSE, msg_id, {"code": "unknown_method", "message": "unknown method %s" % method}, None]
        except Exception as e:
            reply = [RESPONSE, msg_id, {"code": "hook_failed", "message": "%s: %s" % (type(e).__name__, e),
                                        "traceback": traceback.format_exc()}, None]
        sock.send(pack(reply))


if __name__ == "__main__":
    sys.exit(main())
