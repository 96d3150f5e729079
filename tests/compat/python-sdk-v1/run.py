#!/usr/bin/python3
"""Runs compat_plugin.Tagger on the frozen SDK in vendor/ (vendor/bulkhead_plugin/, the Python SDK
of commit b7c3ad3, 2026-11-24): what a user who vendored that SDK into their plugin still runs.
Only this file and compat_plugin.py are new; vendor/ is a copy, never edited (tests/compat/README.md)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "vendor"))
sys.path.insert(1, HERE)
os.environ["BULKHEAD_ENTRY"] = "compat_plugin.Tagger"
os.environ["BULKHEAD_PLUGIN_DIR"] = HERE

from bulkhead_plugin import host  # noqa: E402  (the frozen one: vendor/ is first on the path)

sys.exit(host.main())
