"""A small trainer-side peer for testing plugins over the real protocol.

It does what the trainer does (docs/protocol.md), minus the jail: binds a DEALER on a fresh
ipc:// endpoint in a 0700 folder, starts the plugin's runtime the way bulkhead-plugin-host
execs it, answers hello, sends hook requests and checks every message the plugin sends
against schemas/.

    with TrainerPeer.from_manifest("plugins/color_grade") as peer:
        hello = peer.handshake(options={"gamma": 1.2})
        err, result = peer.call("transform_caption", {"caption": "a cat"})
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import zmq

from . import catalogue
from .schema import Conversation
from .wire import pack, send as send_frames, unpack_frames

PYTHON = os.environ.get("BULKHEAD_PYTHON", "/usr/bin/python3")
NODE = os.environ.get("BULKHEAD_NODE", shutil.which("node") or "/usr/bin/node")


class PeerError(AssertionError):
    pass


def runtime_command(runtime, entry, plugin_dir, home):
    """(argv, extra env) the way bulkhead-plugin-host starts each runtime."""
    if runtime == "python":
        return [PYTHON, "-m", "bulkhead_plugin.host"], {
            "PYTHONPATH": os.path.join(home, "plugin-sdk", "python"), "BULKHEAD_ENTRY": entry}
    if runtime == "node":
        return [NODE, os.path.join(home, "plugin-sdk", "node", "host.js")], {
            "NODE_PATH": os.path.join(home, "plugin-sdk", "node", "node_modules"),
            "BULKHEAD_ENTRY": entry if os.path.isabs(entry) else os.path.join(plugin_dir or "", entry)}
    if runtime == "exec":
        path = entry if os.path.isabs(entry) else os.path.join(plugin_dir or "", entry)
        return [path], {"BULKHEAD_ENTRY": ""}
    raise ValueError("unknown runtime %r" % runtime)


class TrainerPeer:
    def __init__(self, runtime, entry, plugin_dir="", search_path=None, meta=None, options=None,
                 env=None, cwd=None, token="test-token-1234", validate=True, command=None):
        self.home = catalogue.home_dir()
        self.runtime = runtime
        self.entry = entry
        self.plugin_dir = os.path.abspath(plugin_dir) if plugin_dir else ""
        self.search_path = search_path if search_path is not None else [os.getcwd(), self.home]
        self.meta = meta or {}
        self.default_options = options or {}
        self.extra_env = env or {}
        self.cwd = cwd
        self.token = token
        self.validate = validate
        self.command = command
        self.conv = Conversation()
        self.messages = []   # everything the plugin sent, in order
        self.frames = []     # how many frames each of those messages came in (attachments: more than 1)
        self.logs = []       # params of log notifications
        self.control = []    # control requests from control notifications
        self.stdout_lines = []
        self.stderr_lines = []
        self.proc = None
        self.next_id = 1
        self.hello = None

    @classmethod
    def from_manifest(cls, folder, **kw):
        folder = os.path.abspath(folder)
        with open(os.path.join(folder, "plugin.json"), encoding="utf-8") as f:
            m = json.load(f)
        kw.setdefault("meta", {"name": m["name"], "version": m["version"], "description": m["description"]})
        kw.setdefault("options", m.get("options", {}))
        return cls(m["runtime"], m["entry"], plugin_dir=folder, **kw)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, parent_pid=None, via_shell=False):
        """Start the plugin. parent_pid: what BULKHEAD_PARENT_PID says (default this process).
        via_shell: start it as a child of a /bin/sh (self.proc), so that killing the shell orphans it."""
        self.tmp = tempfile.mkdtemp(prefix="bulkhead-test-")
        os.chmod(self.tmp, 0o700)
        self.scratch = os.path.join(self.tmp, "scratch")
        os.mkdir(self.scratch)
        self.endpoint = "ipc://" + os.path.join(self.tmp, "p.sock")
        self.ctx = zmq.Context()
        # Like the trainer, admit only a connection whose PLAIN password is the token (ZAP).
        from zmq.auth.thread import ThreadAuthenticator
        self.auth = ThreadAuthenticator(self.ctx)
        self.auth.start()
        self.auth.configure_plain(domain="*", passwords={"bulkhead": self.token})
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.plain_server = True
        self.sock.bind(self.endpoint)
        argv, extra = self.command or runtime_command(self.runtime, self.entry, self.plugin_dir, self.home)
        env = dict(os.environ)
        env.update(extra)
        self.sent_entry = extra.get("BULKHEAD_ENTRY", "")
        env.update({
            "BULKHEAD_HOME": self.home,
            "BULKHEAD_ENDPOINT": self.endpoint,
            "BULKHEAD_TOKEN": self.token,
            "BULKHEAD_PLUGIN_DIR": self.plugin_dir,
            "BULKHEAD_SEARCH_PATH": os.pathsep.join(self.search_path),
            "BULKHEAD_SCRATCH_DIR": self.scratch,
            "BULKHEAD_PARENT_PID": str(parent_pid or os.getpid()),
            "BULKHEAD_PLUGIN_NAME": self.meta.get("name", ""),
            "BULKHEAD_PLUGIN_VERSION": self.meta.get("version", ""),
            "BULKHEAD_PLUGIN_DESCRIPTION": self.meta.get("description", ""),
        })
        env.update(self.extra_env)
        if via_shell:
            argv = ["/bin/sh", "-c", '"$@" & wait', "sh"] + list(argv)
        self.proc = subprocess.Popen(argv, env=env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self._readers = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout_lines), daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr_lines), daemon=True)]
        for t in self._readers:
            t.start()
        return self

    @staticmethod
    def _pump(stream, lines):
        for line in iter(stream.readline, b""):
            lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except OSError:
                pass
            self.proc.wait(5)
        if self.proc is not None:
            for t in self._readers:
                t.join(2)
            for stream in (self.proc.stdout, self.proc.stderr):
                try:
                    stream.close()
                except Exception:
                    pass
        if getattr(self, "sock", None) is not None:
            self.sock.close()
            self.auth.stop()
            self.ctx.term()
            self.sock = None
        if getattr(self, "tmp", None):
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def wait(self, timeout=5.0):
        """The plugin's exit status (raises if it is still running after timeout)."""
        rc = self.proc.wait(timeout)
        for t in self._readers:
            t.join(2)
        return rc

    # -- messages ------------------------------------------------------------------------------
    def send(self, msg):
        """As the trainer sends it: large bins as attachment frames to a plugin whose hello takes them."""
        self.conv.trainer_sent(msg)
        if (self.hello or {}).get("attachments") is True:
            send_frames(self.sock, msg)
        else:
            self.sock.send(pack(msg))

    def recv_frames(self, timeout=10.0):
        """Next message from the plugin as it came: its frames (the envelope, then any attachments)."""
        if not self.sock.poll(int(timeout * 1000)):
            raise PeerError("no message from the plugin within %.1f s (exit status %r; stderr: %s)"
                            % (timeout, self.proc.poll(), "\n".join(self.stderr_lines[-20:])))
        return self.sock.recv_multipart()

    def recv(self, timeout=10.0):
        """Next message from the plugin (validated against schemas/); log and control notifications are kept too."""
        frames = self.recv_frames(timeout)
        self.frames.append(len(frames))
        msg = unpack_frames(frames)
        self.messages.append(msg)
        if self.validate:
            self.conv.plugin_sent(msg)
        if isinstance(msg, list) and len(msg) == 3 and msg[0] == 2:
            if msg[1] == "log":
                self.logs.append(msg[2])
            elif msg[1] == "control":
                self.control.extend(msg[2]["requests"])
        return msg

    def handshake(self, options=None, error=None, protocol=catalogue.PROTOCOL_VERSION, timeout=10.0):
        """Wait for hello and answer it; returns hello's params."""
        while True:
            msg = self.recv(timeout)
            if msg[0] == 0:
                break
        if msg[2] != "hello" or msg[1] != 0:
            raise PeerError("first request is not hello id 0: %r" % (msg,))
        self.hello = msg[3]
        if error is not None:
            self.send([1, 0, error, None])
        else:
            opts = dict(self.default_options)
            opts.update(options or {})
            self.send([1, 0, None, {"protocol": protocol, "options": opts, "scratch_dir": self.scratch}])
        return self.hello

    def request(self, method, params):
        msg_id = self.next_id
        self.next_id += 1
        self.send([0, msg_id, method, params])
        return msg_id

    def reply_to(self, msg_id, timeout=10.0):
        while True:
            msg = self.recv(timeout)
            if msg[0] == 1 and msg[1] == msg_id:
                return msg[2], msg[3]

    def call(self, method, params, timeout=10.0):
        """Send a request, wait for its reply: (error, result)."""
        return self.reply_to(self.request(method, params), timeout)

    def drain(self, seconds=0.2):
        """Receive whatever the plugin sends in the next few moments."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000)):
                return
            self.recv(0.01)

    def shutdown(self, reason="test over", timeout=5.0):
        self.send([2, "shutdown", {"reason": reason}])
        return self.wait(timeout)

    def log_text(self):
        return "\n".join(l["message"] for l in self.logs)


def image(width, height, mode="RGB", fill=None):
    ch = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    if fill is None:
        data = bytes((i * 7 + 13) % 256 for i in range(width * height * ch))
    else:
        data = bytes(fill) * (width * height)
    return {"width": width, "height": height, "mode": mode, "data": data}


# Model access (docs/protocol.md, section 9): a 4-word embedding, 2 wide.
MODEL_SAMPLES = {
    "parameters": [{"name": "caption.words.weight", "shape": [4, 2], "dtype": "float32", "access": ["read", "write"]}],
    "vocabulary": ["<pad>", "<start>", "<unknown>", "circle"],
    "embedding": "caption.words.weight",
    "resumed": False,
    "tensors": [{"parameter": "caption.words.weight", "rows": [3],
                 "tensor": {"dtype": "float32", "shape": [1, 2], "data": b"\x00\x00\x80\x3f\x00\x00\x00\x00"}}],
}


def sample_kwargs(hook):
    """Plausible params for any catalogue hook, valid against hooks.json."""
    common = {"project_name": "demo", "log_folder": "/tmp/logs/demo", "data_root": "/tmp/data",
              "epoch": 1, "global_step": 10, "epoch_length": 5, "local_step": 2, "max_epochs": 3}
    batch = {"captions": ["a red square", "a blue circle"], "shape": [2, 3, 32, 32]}
    ed_state = {"grad_accum": 1, "lr": 1e-4, "batch_size": 2}
    spec = catalogue.hook(hook)["params"]
    out = {}
    for key in spec.get("required", []):
        if key in common:
            out[key] = common[key]
        elif key == "batch":
            out[key] = batch
        elif key == "ed_state":
            out[key] = ed_state
        elif key in ("loss", "lr", "val_loss"):
            out[key] = 0.125
        elif key in ("step_time_s", "samples_per_s"):
            out[key] = 0.5
        elif key == "path":
            out[key] = "/tmp/ckpt/demo-gs10.pt"
        elif key == "reason":
            out[key] = "epoch"
        elif key == "metrics":
            out[key] = {"step": 10, "loss": 0.1}
        elif key in ("trial", "trials", "best_trial"):  # the method hooks (docs/methods.md)
            out[key] = 1
        elif key == "params":
            out[key] = {"lr": 0.001}
        elif key == "search_space":
            out[key] = {"lr": [0.001, 0.002]}
        elif key == "history":
            out[key] = [{"trial": 0, "params": {"lr": 0.002}, "status": "ok", "score": 0.5}]
        elif key in ("score", "best_score"):
            out[key] = 0.5
        elif key == "status":
            out[key] = "ok"
        elif key == "higher_is_better":
            out[key] = False
        elif key == "tunable":
            out[key] = ["lr", "batch_size"]
        elif key == "state":  # set_state: a plugin's own; an empty one for a plugin that keeps none
            out[key] = {}
        elif key == "caption":
            out[key] = "a red square"
        elif key == "image":
            out[key] = image(4, 3)
        elif key == "captions":
            out[key] = ["a red square", "a blue circle"]
        elif key == "images":
            out[key] = [image(4, 3), image(2, 5, "L")]
        elif key in MODEL_SAMPLES:
            out[key] = MODEL_SAMPLES[key]
        else:
            raise KeyError("no sample value for %s.%s" % (hook, key))
    return out
