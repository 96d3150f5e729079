"""The Python plugin host: ``python3 -m bulkhead_plugin.host``.

bulkhead-plugin-host sets up the jail and execs this with the environment described in
docs/protocol.md. It connects to the trainer, loads the plugin class named by
BULKHEAD_ENTRY, says hello, then serves hook requests one at a time until the trainer
says shutdown or goes away.

Exit status: 0 after shutdown; 1 when the trainer refuses the handshake (or never answers
it) or the trainer process is gone; 78 when the plugin cannot be loaded (after sending the
reason as a log notification).
"""
import importlib
import importlib.util
import io
import logging
import os
import platform
import queue
import sys
import threading
import time
import traceback
import types

import zmq

from . import catalogue
from . import plugin as plugin_module
from . import region
from . import wire
from .plugin import BasePlugin, EdState, make_set_arg

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_LOAD_FAILED = 78  # EX_CONFIG

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2
WELCOME_TIMEOUT_S = float(os.environ.get("BULKHEAD_WELCOME_TIMEOUT_S", "30"))
PARENT_POLL_S = 0.2
CHANNELS = {"RGB": 3, "RGBA": 4, "L": 1}


class LoadError(Exception):
    """The plugin could not be loaded; the message names what was wrong, tb is the plugin's traceback (if any)."""

    def __init__(self, message, tb=""):
        super().__init__(message)
        self.tb = tb


def _plugin_traceback(e):
    """The traceback of an exception raised by the plugin's own code, without the import machinery."""
    frames = traceback.extract_tb(e.__traceback__)
    keep = [f for f in frames if "importlib" not in f.filename and not f.filename.endswith(os.path.join("bulkhead_plugin", "host.py"))]
    lines = ["Traceback (most recent call last):\n"] + traceback.format_list(keep) if keep else []
    return "".join(lines + traceback.format_exception_only(type(e), e))


class HookError(Exception):
    def __init__(self, code, message, tb=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.tb = tb


# ---------------------------------------------------------------------------------------------
# Parent watch: exit within ~PARENT_POLL_S once the trainer is gone, even while a hook runs.
# ---------------------------------------------------------------------------------------------
def _parent_alive(parent_pid, first_ppid):
    if os.getppid() != first_ppid:
        return False
    if parent_pid:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    return True


def start_parent_watch():
    try:
        parent_pid = int(os.environ.get("BULKHEAD_PARENT_PID") or 0)
    except ValueError:
        parent_pid = 0
    first_ppid = os.getppid()
    if not _parent_alive(parent_pid, first_ppid):
        os._exit(EXIT_REFUSED)

    def watch():
        while True:
            time.sleep(PARENT_POLL_S)
            if not _parent_alive(parent_pid, first_ppid):
                try:
                    sys.stderr.write("bulkhead: the trainer is gone; exiting\n")
                    sys.stderr.flush()
                finally:
                    os._exit(EXIT_REFUSED)

    t = threading.Thread(target=watch, name="bulkhead-parent-watch", daemon=True)
    t.start()
    return t


# ---------------------------------------------------------------------------------------------
# Outgoing messages from any thread go through a queue; only the main thread touches the socket.
# ---------------------------------------------------------------------------------------------
class Sink:
    """Where a plugin's log lines and control requests go."""

    def __init__(self):
        self.outbox = queue.SimpleQueue()
        self.main_thread = threading.get_ident()
        self.in_hook = False
        self.pending_control = []

    def log(self, level, message):
        self.outbox.put([NOTIFICATION, "log", {"level": level, "message": message}])

    def control(self, request):
        if self.in_hook and threading.get_ident() == self.main_thread:
            self.pending_control.append(request)  # rides in the reply of the hook being served
        else:
            self.outbox.put([NOTIFICATION, "control", {"requests": [request]}])


class LogHandler(logging.Handler):
    """Python logging records -> log notifications."""

    def __init__(self, sink):
        super().__init__(logging.DEBUG)
        self.sink = sink
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record):
        try:
            if record.levelno >= logging.ERROR:
                level = "error"
            elif record.levelno >= logging.WARNING:
                level = "warning"
            elif record.levelno >= logging.INFO:
                level = "info"
            else:
                level = "debug"
            msg = self.format(record)
            if record.name not in ("root", ""):
                msg = "%s: %s" % (record.name, msg)
            self.sink.log(level, msg)
        except Exception:  # never let logging break a hook
            self.handleError(record)


# ---------------------------------------------------------------------------------------------
# Loading the plugin class
# ---------------------------------------------------------------------------------------------
def _search_roots():
    return [os.path.abspath(p) for p in os.environ.get("BULKHEAD_SEARCH_PATH", "").split(os.pathsep) if p]


def install_plugins_package(roots):
    """Make ``plugins`` a package spanning every root's plugins/ folder (in order), then Bulkhead's
    bundled one, and make ``plugins.plugins`` Bulkhead's shim (EveryDream2's BasePlugin name)."""
    home = catalogue.home_dir()
    bundled = os.path.join(home, "plugins")
    dirs = []
    for root in roots:
        d = os.path.join(root, "plugins")
        if os.path.isdir(d) and os.path.realpath(d) not in [os.path.realpath(x) for x in dirs]:
            dirs.append(d)
    if os.path.isdir(bundled) and os.path.realpath(bundled) not in [os.path.realpath(x) for x in dirs]:
        dirs.append(bundled)

    pkg = types.ModuleType("plugins")
    pkg.__path__ = dirs
    pkg.__package__ = "plugins"
    pkg.__file__ = os.path.join(bundled, "__init__.py")
    pkg.__doc__ = "EveryDream2-compatible plugins package (Bulkhead): spans %s" % ", ".join(dirs)
    spec = importlib.util.spec_from_loader("plugins", loader=None, is_package=True)
    spec.submodule_search_locations = dirs
    pkg.__spec__ = spec
    sys.modules["plugins"] = pkg

    shim_path = os.path.join(bundled, "plugins.py")
    if os.path.isfile(shim_path):
        sspec = importlib.util.spec_from_file_location("plugins.plugins", shim_path)
        shim = importlib.util.module_from_spec(sspec)
        sys.modules["plugins.plugins"] = shim
        sspec.loader.exec_module(shim)
    else:
        from . import plugin as shim
        sys.modules["plugins.plugins"] = shim
    pkg.plugins = sys.modules["plugins.plugins"]


def load_plugin_class(entry):
    """Import ``module.Class`` per the rules in docs/protocol.md; raise LoadError naming what was wrong."""
    if not entry or "." not in entry:
        raise LoadError("not a module.Class path (BULKHEAD_ENTRY=%r)" % (entry,))
    plugin_dir = os.environ.get("BULKHEAD_PLUGIN_DIR", "")
    roots = _search_roots()
    paths = []
    if plugin_dir:
        plugin_dir = os.path.abspath(plugin_dir)
        paths += [plugin_dir, os.path.dirname(plugin_dir)]
    paths += roots
    seen = []
    for p in paths:
        if p not in seen:
            seen.append(p)
    paths = seen
    for p in reversed(paths):
        while p in sys.path:
            sys.path.remove(p)
        sys.path.insert(0, p)
    # EveryDream2's `train` module, last: a plugin's own train.py still wins.
    shim = os.path.join(os.path.dirname(os.path.abspath(__file__)), "everydream2")
    if shim not in sys.path:
        sys.path.append(shim)
    install_plugins_package(roots)

    module_name, _, class_name = entry.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise LoadError("module %r not found (searched %s)" % (module_name, os.pathsep.join(paths) or "sys.path"))
        raise LoadError("importing module %r failed: %s: %s" % (module_name, type(e).__name__, e), _plugin_traceback(e))
    except Exception as e:
        raise LoadError("importing module %r failed: %s: %s" % (module_name, type(e).__name__, e), _plugin_traceback(e))
    cls = getattr(module, class_name, None)
    if cls is None:
        raise LoadError("module %r (%s) has no class %r" % (module_name, getattr(module, "__file__", "?"), class_name))
    if not isinstance(cls, type) or not issubclass(cls, BasePlugin):
        raise LoadError("%r is not a valid plugin: it does not extend BasePlugin "
                        "(from bulkhead_plugin import BasePlugin, or EveryDream2's from plugins.plugins import BasePlugin)"
                        % (class_name,))
    return cls


# Hooks of EveryDream2's (its newer branches) that hand a plugin the live model: out of process
# there is no model object to hand over, so Bulkhead does not call them.
UNCALLED_EVERYDREAM2_HOOKS = ("on_backpropagation", "modify_sample_prompt")


def uncalled_hook_warnings(cls):
    """One line per EveryDream2 hook the class defines that Bulkhead never calls, so that nothing
    is dropped without a word."""
    return ["%s defines %s, which Bulkhead does not call: it hands the plugin EveryDream2's live model, "
            "which cannot cross into the plugin's process (model access reaches the model through on_model_load, "
            "on_model_step and on_model_save: docs/protocol.md, section 9). The plugin runs without it."
            % (cls.__name__, hook) for hook in UNCALLED_EVERYDREAM2_HOOKS if callable(getattr(cls, hook, None))]


def build_plugin(entry):
    cls = load_plugin_class(entry)
    try:
        return cls()
    except Exception as e:
        raise LoadError("%s() raised %s: %s" % (cls.__name__, type(e).__name__, e), _plugin_traceback(e))


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
def image_from_wire(obj):
    """A wire image as a PIL image. Pixels in the image region (docs/protocol.md, section 2.2) are
    not copied where PIL can map them (L, RGBA: the image is read-only, PIL copies on the first
    write). RGB PIL unpacks to 4 bytes a pixel, and its decoder takes bytes only: a copy first."""
    from PIL import Image
    if not isinstance(obj, dict):
        raise HookError("bad_params", "image must be a map with width, height, mode, data")
    w, h, mode, data = obj.get("width"), obj.get("height"), obj.get("mode"), obj.get("data")
    if not isinstance(w, int) or not isinstance(h, int) or w < 1 or h < 1:
        raise HookError("bad_params", "image width and height must be positive integers")
    if mode not in CHANNELS:
        raise HookError("bad_params", "image mode must be RGB, RGBA or L, not %r" % (mode,))
    images = region.IMAGES
    if "slot" in obj and images is not None and data is None:
        try:
            data = images.pixels(obj["slot"])
        except (ValueError, KeyError, TypeError) as e:
            raise HookError("bad_params", "image slot: %s" % e)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise HookError("bad_params", "image data must be MessagePack bin")
    if len(data) != w * h * CHANNELS[mode]:
        raise HookError("bad_params", "image data has %d bytes; %dx%d %s needs %d"
                        % (len(data), w, h, mode, w * h * CHANNELS[mode]))
    if isinstance(data, memoryview) and mode not in region.MAPPED_MODES:
        data = bytes(data)
    img = Image.frombuffer(mode, (w, h), data, "raw", mode, 0, 1)
    if isinstance(data, memoryview):
        images.mapped.append(img)
    return img


def image_to_wire(img, fallback_mode):
    """A PIL image (or numpy array) as a wire image: its pixels into the slot lent with the request
    when there is one and they fit, else in the message."""
    from PIL import Image
    if not isinstance(img, Image.Image):
        if hasattr(img, "__array_interface__"):  # numpy array (EveryDream2 passed HxWx3 uint8)
            img = Image.fromarray(img)
        else:
            raise TypeError("transform_pil_image must return a PIL.Image (or a numpy array), not %s" % type(img).__name__)
    if img.mode not in CHANNELS:
        img = img.convert(fallback_mode if fallback_mode in CHANNELS else "RGB")
    wired = {"width": img.width, "height": img.height, "mode": img.mode}
    slot = region.IMAGES.place(img) if region.IMAGES is not None else None
    if slot is None:
        wired["data"] = img.tobytes()
    else:
        wired["slot"] = slot
    return wired


PLAIN_TYPES = (str, int, float, bool, bytes, type(None))


def plain_data_problem(value, where):
    """None when value is plain data MessagePack carries as it is; else what and where it is not."""
    if isinstance(value, PLAIN_TYPES):
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problem = plain_data_problem(item, "%s[%d]" % (where, i))
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                return "a %s key in %s (keys are str or int)" % (type(key).__name__, where)
            problem = plain_data_problem(item, "%s[%r]" % (where, key))
            if problem:
                return problem
        return None
    return ("a %s at %s: a state is plain data (dict, list, str, int, float, bool, None, bytes)"
            % (type(value).__name__, where))


# ---------------------------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------------------------
class Session:
    def __init__(self, sock, plugin, sink):
        self.sock = sock
        self.plugin = plugin
        self.sink = sink
        self.hooks = set(catalogue.hook_names())
        self.arg_update_hooks = set(catalogue.arg_update_hooks())
        self.model_hooks = set(catalogue.model_hooks())
        # An EveryDream2 on_model_load keeps its arguments as the plugin's state (everydream2/model.py).
        self.replays_load = everydream2().uses_ed_state(type(plugin))

    # -- sending -----------------------------------------------------------------------------
    def send(self, msg):
        wire.send(self.sock, msg)

    def flush(self):
        while True:
            try:
                msg = self.sink.outbox.get_nowait()
            except queue.Empty:
                return
            self.send(msg)

    # -- dispatch ------------------------------------------------------------------------------
    def call_hook(self, method, params):
        if params is None:
            params = {}
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise HookError("bad_params", "params of %s must be a map with string keys" % method)
        fn = getattr(self.plugin, method)
        if method == "transform_caption":
            caption = params.get("caption")
            if not isinstance(caption, str):
                raise HookError("bad_params", "transform_caption needs params {caption: str}")
            out = self._guarded(fn, caption)
            if not isinstance(out, str):
                raise HookError("hook_failed", "transform_caption returned %s, not str" % type(out).__name__)
            return {"caption": out}
        if method == "transform_captions":
            captions = params.get("captions")
            if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
                raise HookError("bad_params", "transform_captions needs params {captions: [str]}")
            out = self._batch_result(method, self._guarded(fn, captions), len(captions))
            # A wrong item is left for the trainer to judge: it refuses that item alone.
            return {"captions": out}
        if method == "transform_pil_images":
            images = params.get("images")
            if not isinstance(images, list):
                raise HookError("bad_params", "transform_pil_images needs params {images: [image]}")
            imgs = [image_from_wire(image) for image in images]
            modes = [img.mode for img in imgs]
            out = self._batch_result(method, self._guarded(fn, imgs), len(imgs))
            try:
                return {"images": [image_to_wire(img, mode) for img, mode in zip(out, modes)]}
            except Exception as e:
                raise HookError("hook_failed", "%s: %s" % (type(e).__name__, e), traceback.format_exc())
        if method == "get_state":
            state = self._guarded(everydream2().replay_state if self.replays_load else self.plugin.get_state)
            problem = plain_data_problem(state, "state")
            if problem:
                raise HookError("hook_failed", "get_state returned %s" % problem)
            return {"state": state}
        if method == "set_state":
            if "state" not in params:
                raise HookError("bad_params", "set_state needs params {state, global_step}")
            if self.replays_load:
                self._guarded(everydream2().replay, self.plugin, params["state"])
            else:
                self._guarded(self.plugin.set_state, params["state"])
            return None
        if method == "transform_pil_image":
            img = image_from_wire(params.get("image"))
            mode = img.mode
            out = self._guarded(fn, img)
            try:
                return {"image": image_to_wire(out, mode)}
            except Exception as e:
                raise HookError("hook_failed", "%s: %s" % (type(e).__name__, e), traceback.format_exc())
        kwargs = dict(params)
        if method in self.model_hooks:
            from . import model
            model.begin_request(params)
            if method in ("on_model_load", "on_model_save"):  # EveryDream2's names: its ed_state too
                out = self._guarded(everydream2_model_call, method, fn, kwargs, self.plugin.scratch_dir)
            else:
                out = self._guarded(fn, **kwargs)  # the reply itself: updates
            if out is not None and not isinstance(out, dict):
                raise HookError("hook_failed", "%s returned %s, not a dict or None" % (method, type(out).__name__))
            return out
        if isinstance(kwargs.get("ed_state"), dict):
            kwargs["ed_state"] = EdState(kwargs["ed_state"], everydream2().step_objects())
        if "batch" in kwargs:
            kwargs["batch"] = everydream2().observer_batch(kwargs["batch"])
        if method in self.arg_update_hooks:
            sink = self.sink

            def arg_update_callback(arg, newValue):
                sink.control(make_set_arg(arg, newValue, reason="arg_update_callback in %s" % method))
            kwargs["arg_update_callback"] = arg_update_callback
        out = self._guarded(fn, **kwargs)
        # A method's answer (hooks.json: returns_value); None is nil, what a plugin that does not
        # implement the hook answers.
        if catalogue.hook(method).get("returns_value") and out is not None:
            if not isinstance(out, dict):
                raise HookError("hook_failed", "%s returned %s, not a dict" % (method, type(out).__name__))
            return out
        return None  # observers' return values are ignored, as in EveryDream2

    @staticmethod
    def _batch_result(method, out, count):
        if not isinstance(out, (list, tuple)):
            raise HookError("hook_failed", "%s returned %s, not a list" % (method, type(out).__name__))
        if len(out) != count:
            raise HookError("hook_failed", "%s returned %d items for %d" % (method, len(out), count))
        return list(out)

    def _guarded(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            # The traceback starts at the plugin's own frame, not the SDK's.
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__.tb_next))
            raise HookError("hook_failed", "%s: %s" % (type(e).__name__, e), tb)

    def handle_request(self, msg_id, method, params):
        if not isinstance(method, str) or method not in self.hooks:
            return [RESPONSE, msg_id, {"code": "unknown_method", "message": "unknown method %r" % (method,)}, None]
        self.sink.in_hook = True
        self.sink.pending_control = []
        if region.IMAGES is not None:
            region.IMAGES.begin_request()
        try:
            result = self.call_hook(method, params)
            control = self.sink.pending_control
            if control:
                result = dict(result or {})
                result["control"] = list(control)
            return [RESPONSE, msg_id, None, result]
        except HookError as e:
            err = {"code": e.code, "message": e.message}
            if e.tb:
                err["traceback"] = e.tb
            # Control requests made before the failure still count: send them on their own.
            for req in self.sink.pending_control:
                self.sink.outbox.put([NOTIFICATION, "control", {"requests": [req]}])
            return [RESPONSE, msg_id, err, None]
        except Exception as e:  # a bug in the SDK itself
            return [RESPONSE, msg_id, {"code": "internal", "message": "%s: %s" % (type(e).__name__, e),
                                       "traceback": traceback.format_exc()}, None]
        finally:
            self.sink.in_hook = False
            self.sink.pending_control = []
            if region.IMAGES is not None:
                region.IMAGES.end_request()

    def serve(self):
        serving = region.ServingWord()
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while True:
            self.flush()
            if not poller.poll(50):
                continue
            try:
                # As bytes: PIL's decoders take nothing else, so a view would be copied anyway, and
                # small messages are cheaper so.
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            try:
                msg = wire.unpack_frames(frames)
            except Exception as e:
                self.sink.log("warning", "bulkhead: dropped a malformed message: %s" % e)
                continue
            if not isinstance(msg, list) or not msg:
                self.sink.log("warning", "bulkhead: dropped a message that is not a MessagePack-RPC array")
                continue
            kind = msg[0]
            if kind == REQUEST and len(msg) == 4 and isinstance(msg[1], int):
                serving.serving(msg[1])
                reply = self.handle_request(msg[1], msg[2], msg[3])
                self.flush()  # log lines of the hook go before its reply
                self.send(reply)
            elif kind == NOTIFICATION and len(msg) == 3:
                if msg[1] == "shutdown":
                    return EXIT_OK
                # Other notifications from the trainer are ignored in protocol v1.
            else:
                self.sink.log("warning", "bulkhead: dropped an unexpected message of type %r" % (kind,))


def everydream2():
    """The EveryDream2 model stand-ins (imported when first needed: they import numpy)."""
    from .everydream2 import model as ed2_model
    return ed2_model


def everydream2_model_call(method, fn, kwargs, scratch):
    """on_model_load / on_model_save with EveryDream2's ed_state (and save_folder) as well: a
    Bulkhead plugin returns its reply; an EveryDream2 one changes the stand-ins, which become the reply."""
    if method == "on_model_load":
        return everydream2().call_load(fn, kwargs)
    return everydream2().call_save(fn, kwargs, scratch)


def close(sock, ctx, linger_ms):
    try:
        sock.setsockopt(zmq.LINGER, linger_ms)
        sock.close()
        ctx.term()
    except Exception:
        pass


def main():
    try:
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True)
    except Exception:
        pass
    endpoint = os.environ.get("BULKHEAD_ENDPOINT")
    token = os.environ.get("BULKHEAD_TOKEN", "")
    entry = os.environ.get("BULKHEAD_ENTRY", "")
    if not endpoint:
        sys.stderr.write("bulkhead_plugin.host: BULKHEAD_ENDPOINT is not set; this program is started by the trainer\n")
        return EXIT_REFUSED
    start_parent_watch()

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    # Every connection is authenticated (docs/protocol.md, section 2): the token is the password.
    if token:
        sock.plain_username = b"bulkhead"
        sock.plain_password = token.encode()
    sock.connect(endpoint)

    sink = Sink()
    plugin_module.HOST_SINK = sink
    root = logging.getLogger()
    root.addHandler(LogHandler(sink))
    level = os.environ.get("BULKHEAD_LOG_LEVEL", "INFO").upper()
    root.setLevel(getattr(logging, level, logging.INFO))

    # 1. load
    try:
        from . import model
        model.attach_region()  # model_access: the sealed region the trainer handed over, if any
        region.attach_image_region()  # image hooks: pixels in shared memory, if handed over
        plugin = build_plugin(entry)
        hooks = plugin.implemented_hooks()
        name, version, description = plugin.plugin_meta()
    except LoadError as e:
        message = "%s: %s\n%s" % (entry, e, e.tb)
    except Exception as e:
        message = "%s: %s: %s\n%s" % (entry, type(e).__name__, e, traceback.format_exc())
    else:
        message = None
    if message is not None:
        message = message.rstrip("\n")
        sys.stderr.write(message + "\n")
        sock.send(wire.pack([NOTIFICATION, "log", {"level": "error", "message": message}]))
        close(sock, ctx, 2000)
        return EXIT_LOAD_FAILED
    plugin._bulkhead_sink = sink
    for message in uncalled_hook_warnings(type(plugin)):
        sock.send(wire.pack([NOTIFICATION, "log", {"level": "warning", "message": message}]))

    # 2. hello
    hello = {
        "protocol": catalogue.PROTOCOL_VERSION,
        "token": token,
        "plugin": {"name": name, "version": version, "description": description},
        "hooks": hooks,
        "runtime": {"name": "python", "version": platform.python_version()},
        "pid": os.getpid(),
        "attachments": True,
        "image_region": region.IMAGES is not None,
    }
    sock.send(wire.pack([REQUEST, 0, "hello", hello]))

    # 3. welcome (log lines logged at import time wait in the outbox until then)
    deadline = time.monotonic() + WELCOME_TIMEOUT_S
    welcome = None
    while welcome is None:
        left = deadline - time.monotonic()
        if left <= 0:
            sys.stderr.write("bulkhead_plugin.host: no answer to hello within %.0f s\n" % WELCOME_TIMEOUT_S)
            close(sock, ctx, 0)
            return EXIT_REFUSED
        if not sock.poll(min(100, int(left * 1000) + 1)):
            continue
        try:
            msg = wire.unpack_frames(sock.recv_multipart())
        except Exception:
            continue
        if isinstance(msg, list) and len(msg) == 3 and msg[0] == NOTIFICATION and msg[1] == "shutdown":
            close(sock, ctx, 0)
            return EXIT_OK
        if isinstance(msg, list) and len(msg) == 4 and msg[0] == RESPONSE and msg[1] == 0:
            if msg[2] is not None:
                err = msg[2] if isinstance(msg[2], dict) else {"message": str(msg[2])}
                sys.stderr.write("bulkhead_plugin.host: the trainer refused the handshake: %s: %s\n"
                                 % (err.get("code", "error"), err.get("message", "")))
                close(sock, ctx, 0)
                return EXIT_REFUSED
            welcome = msg[3] if isinstance(msg[3], dict) else {}
    if welcome.get("protocol") != catalogue.PROTOCOL_VERSION:
        sys.stderr.write("bulkhead_plugin.host: the trainer speaks protocol %r, this SDK speaks %d\n"
                         % (welcome.get("protocol"), catalogue.PROTOCOL_VERSION))
        close(sock, ctx, 0)
        return EXIT_REFUSED
    options = welcome.get("options")
    plugin.options = dict(options) if isinstance(options, dict) else {}
    plugin.scratch_dir = welcome.get("scratch_dir") or os.environ.get("BULKHEAD_SCRATCH_DIR") or None
    plugin.rank, plugin.world_size, plugin.seed = welcome.get("rank", 0), welcome.get("world_size", 1), welcome.get("seed")

    session = Session(sock, plugin, sink)
    try:
        plugin.configure()
    except Exception as e:
        message = "%s: configure() raised %s: %s\n%s" % (entry, type(e).__name__, e, traceback.format_exc())
        sys.stderr.write(message)
        session.flush()
        sock.send(wire.pack([NOTIFICATION, "log", {"level": "error", "message": message}]))
        close(sock, ctx, 2000)
        return EXIT_LOAD_FAILED

    # 4. serve
    status = session.serve()
    session.flush()
    close(sock, ctx, 500)
    return status


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no waiting for plugin threads
