"""Shared paths and helpers for the SDK tests."""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HOME = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
FIXTURES = os.path.join(HOME, "tests", "sdk", "fixtures")
SDK_PY = os.path.join(HOME, "plugin-sdk", "python")
if SDK_PY not in sys.path:
    sys.path.insert(0, SDK_PY)
os.environ.setdefault("BULKHEAD_HOME", HOME)

from bulkhead_plugin import catalogue  # noqa: E402
from bulkhead_plugin.testing import TrainerPeer, image, sample_kwargs  # noqa: E402,F401

NODE_READY = os.path.isdir(os.path.join(HOME, "plugin-sdk", "node", "node_modules", "zeromq"))


def with_batched(hooks):
    """hooks, and each batched transform whose per-item hook is among them (hooks.json batch_of),
    in the catalogue's order: what an SDK's hello lists for a plugin overriding `hooks`."""
    return [h for h in catalogue.hook_names() if h in hooks or catalogue.hook(h).get("batch_of") in hooks]


def process_gone(pid):
    """True when pid no longer runs (gone, or a zombie waiting to be reaped)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def wait_gone(pid, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process_gone(pid):
            return True
        time.sleep(0.05)
    return process_gone(pid)


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
