"""Bulkhead plugin SDK for Python (protocol v1).

    from bulkhead_plugin import BasePlugin

    class Shout(BasePlugin):
        def transform_caption(self, caption):
            return caption + "!"

EveryDream2 plugins (``from plugins.plugins import BasePlugin``) run unchanged: the host
makes ``plugins.plugins`` resolve to this BasePlugin.
"""
from .plugin import BasePlugin, EdState  # noqa: F401
from .catalogue import PROTOCOL_VERSION  # noqa: F401

__all__ = ["BasePlugin", "EdState", "PROTOCOL_VERSION"]
__version__ = "1.0.0"
