"""The hook catalogue, read from Bulkhead's schemas/hooks.json (the single source of truth).

Nothing here keeps its own list of hooks: the names, their kinds, and which hooks
get EveryDream2's ``arg_update_callback`` all come from hooks.json. The schemas
folder is found through ``$BULKHEAD_HOME/schemas``, else ``<sdk>/../../schemas``
(this package lives in ``<home>/plugin-sdk/python/bulkhead_plugin``).
"""
import functools
import json
import os

PROTOCOL_VERSION = 1

_SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # <home>/plugin-sdk/python


def home_dir():
    """Bulkhead's home: the folder holding schemas/, plugins/ and plugin-sdk/."""
    env = os.environ.get("BULKHEAD_HOME")
    if env:
        return os.path.abspath(env)
    return os.path.abspath(os.path.join(_SDK_DIR, "..", ".."))


def schemas_dir():
    candidates = []
    if os.environ.get("BULKHEAD_HOME"):
        candidates.append(os.path.join(os.environ["BULKHEAD_HOME"], "schemas"))
    candidates.append(os.path.join(_SDK_DIR, "..", "..", "schemas"))
    for c in candidates:
        if os.path.isfile(os.path.join(c, "hooks.json")):
            return os.path.abspath(c)
    raise FileNotFoundError(
        "cannot find Bulkhead's schemas/hooks.json (looked in: %s); set BULKHEAD_HOME"
        % ", ".join(os.path.abspath(c) for c in candidates))


@functools.lru_cache(maxsize=None)
def load_schema(relative):
    with open(os.path.join(schemas_dir(), relative), encoding="utf-8") as f:
        return json.load(f)


def catalogue():
    """hooks.json as a dict."""
    return load_schema("hooks.json")


def hook_names():
    """Every hook name, in catalogue order."""
    return list(catalogue()["hooks"].keys())


def hook(name):
    return catalogue()["hooks"][name]


def hook_kind(name):
    return hook(name)["kind"]


def is_transform(name):
    return hook_kind(name) == "transform"


def arg_update_hooks():
    """Hooks whose kwargs carry EveryDream2's arg_update_callback (hooks.json: arg_update_callback: true)."""
    return [n for n, h in catalogue()["hooks"].items() if h.get("arg_update_callback")]


def settable_args():
    """Argument names a plugin may change with set_arg (from protocol/control.schema.json)."""
    names = []
    for alt in load_schema("protocol/control.schema.json")["items"]["oneOf"]:
        props = alt.get("properties", {})
        if props.get("action", {}).get("const") == "set_arg":
            names.extend(props.get("name", {}).get("enum", []))
    return names


def set_arg_bounds(name):
    """(minimum, maximum) of a set_arg value, from protocol/control.schema.json."""
    for alt in load_schema("protocol/control.schema.json")["items"]["oneOf"]:
        props = alt.get("properties", {})
        if props.get("action", {}).get("const") == "set_arg":
            v = props.get("value", {})
            return v.get("minimum"), v.get("maximum")
    return None, None
