"""The SDKs' hook lists are held together with schemas/hooks.json."""
import inspect
import json
import os
import re
import subprocess
import unittest

from support import HOME, catalogue

from bulkhead_plugin import BasePlugin
from bulkhead_plugin.plugin import make_set_arg


class CatalogueTest(unittest.TestCase):
    def test_python_base_plugin_has_exactly_the_catalogue_hooks(self):
        # A method's hooks (describe_method, ...) have no on_ prefix: any catalogue name counts too.
        methods = {n for n, _ in inspect.getmembers(BasePlugin, inspect.isfunction)
                   if n.startswith("on_") or n.startswith("transform_") or n in catalogue.hook_names()}
        self.assertEqual(methods, set(catalogue.hook_names()))

    def test_everydream2_hooks_take_kwargs(self):
        for name in catalogue.hook_names():
            sig = inspect.signature(getattr(BasePlugin, name))
            if catalogue.is_transform(name) or name == "set_state":
                self.assertEqual(len(sig.parameters), 2, name)  # self + value, as in EveryDream2
            elif name == "get_state":
                self.assertEqual(len(sig.parameters), 1, name)
            else:
                self.assertTrue(any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()), name)

    def test_node_base_plugin_has_exactly_the_catalogue_hooks(self):
        script = ("const { BasePlugin } = require(%r);"
                  "console.log(JSON.stringify(Object.getOwnPropertyNames(BasePlugin.prototype)"
                  ".filter(n => n !== 'constructor' && typeof BasePlugin.prototype[n] === 'function')))"
                  % os.path.join(HOME, "plugin-sdk", "node", "index.js"))
        out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout
        names = set(catalogue.hook_names())
        methods = {n for n in json.loads(out) if n.startswith("on_") or n.startswith("transform_") or n in names}
        self.assertEqual(methods, names)

    # The C++ SDK's list (plugin.hpp's BULKHEAD_HOOKS) and its kProtocolVersion are compared with
    # hooks.json by tests/protocol/catalogue_test.cpp, compiled.

    def test_python_and_node_speak_the_catalogues_protocol_version(self):
        with open(os.path.join(HOME, "schemas", "hooks.json")) as f:
            version = json.load(f)["protocol_version"]
        self.assertEqual(catalogue.PROTOCOL_VERSION, version)
        script = "console.log(require(%r).PROTOCOL_VERSION)" % os.path.join(HOME, "plugin-sdk", "node", "index.js")
        out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout
        self.assertEqual(int(out), version)

    def test_no_sdk_plugins_know_every_catalogue_hook(self):
        # raw-python and raw-fault list the hooks they answer by hand: every catalogue hook must be there.
        for path in ("tests/plugins/raw-python/raw_plugin.py", "tests/plugins/raw-fault/raw_fault.py"):
            with open(os.path.join(HOME, path)) as f:
                quoted = set(re.findall(r'"(\w+)"', f.read()))
            for name in catalogue.hook_names():
                self.assertIn(name, quoted, "%s does not know the hook %s" % (path, name))

    def test_arg_update_hooks_come_from_hooks_json(self):
        with open(os.path.join(HOME, "schemas", "hooks.json")) as f:
            raw = json.load(f)
        expected = [n for n, h in raw["hooks"].items() if h.get("arg_update_callback") is True]
        self.assertEqual(catalogue.arg_update_hooks(), expected)
        self.assertTrue(expected)

    def test_set_arg_whitelist_from_control_schema(self):
        self.assertEqual(catalogue.settable_args(), ["grad_accum"])
        self.assertEqual(make_set_arg("grad_accum", 4.0), {"action": "set_arg", "name": "grad_accum", "value": 4})
        with self.assertRaises(TypeError):
            make_set_arg("lr", 1)
        with self.assertRaises(ValueError):
            make_set_arg("grad_accum", 0)
        with self.assertRaises(ValueError):
            make_set_arg("grad_accum", True)

    def test_docs_cover_every_hook_and_error_code(self):
        with open(os.path.join(HOME, "docs", "protocol.md")) as f:
            doc = f.read()
        for name in catalogue.hook_names():
            self.assertIn("`%s`" % name, doc, name)
        codes = catalogue.load_schema("protocol/error.schema.json")["properties"]["code"]["enum"]
        for code in codes:
            self.assertIn("`%s`" % code, doc, code)
        # Every variable the trainer and the host give a plugin, read from their source, is documented.
        exported = set()
        for source, pattern in (("trainer/src/supervisor/host_process.cpp", r'\benv\["(BULKHEAD_[A-Z_]+)"\]'),
                                ("plugin-host/src/runtime_exec.cpp", r'setenv\("(BULKHEAD_[A-Z_]+)"')):
            with open(os.path.join(HOME, source)) as f:
                exported |= set(re.findall(pattern, f.read()))
        self.assertGreaterEqual(len(exported), 10, exported)
        for var in sorted(exported):
            self.assertIn(var, doc)


    def test_docs_hook_table_gives_each_hooks_kind_and_deadline(self):
        with open(os.path.join(HOME, "docs", "protocol.md")) as f:
            rows = {m.group(1): (m.group(2), m.group(3))
                    for m in re.finditer(r"^\| `(\w+)` \| (call|notify|transform) \| (\d+) s \|", f.read(), re.M)}
        hooks = catalogue.load_schema("hooks.json")["hooks"]
        self.assertEqual(sorted(rows), sorted(hooks), "protocol.md's hook table lists every catalogue hook, and no other")
        for name, spec in hooks.items():
            self.assertEqual(rows[name], (spec["kind"], str(spec["deadline_ms"] // 1000)), name)

    def test_docs_env_table_is_what_the_trainer_and_host_export(self):
        with open(os.path.join(HOME, "docs", "protocol.md")) as f:
            doc = f.read()
        table = doc[doc.index("### Environment"):doc.index("## 2.")]
        documented = set(re.findall(r"`(BULKHEAD_[A-Z_]+)`", table))
        exported = set()
        for source, pattern in (("trainer/src/supervisor/host_process.cpp", r'\benv\["(BULKHEAD_[A-Z_]+)"\]'),
                                ("plugin-host/src/runtime_exec.cpp", r'setenv\("(BULKHEAD_[A-Z_]+)"')):
            with open(os.path.join(HOME, source)) as f:
                exported |= set(re.findall(pattern, f.read()))
        # BULKHEAD_PYTHON is the trainer's own setting, passed on to the host; the rest must match exactly.
        self.assertEqual(documented - {"BULKHEAD_PYTHON"}, exported - {"BULKHEAD_PYTHON"})


if __name__ == "__main__":
    unittest.main()
