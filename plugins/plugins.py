"""EveryDream2 compatibility shim: ``from plugins.plugins import BasePlugin`` gets Bulkhead's BasePlugin.

The Python plugin host makes the module name ``plugins.plugins`` resolve to this file, whichever
``plugins/`` folder the plugin itself sits in (Bulkhead's bundled one, or a user's own folder
next to train.json, which needs no plugins.py of its own).
"""
from bulkhead_plugin.plugin import BasePlugin, EdState  # noqa: F401

__all__ = ["BasePlugin", "EdState"]
