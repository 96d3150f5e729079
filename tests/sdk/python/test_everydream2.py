"""EveryDream2 plugins run unmodified: class paths resolved on BULKHEAD_SEARCH_PATH, plugins.plugins shim."""
import os
import shutil
import tempfile
import textwrap
import unittest

from support import HOME, TrainerPeer, sample_kwargs, with_batched

ED2_PLUGIN = textwrap.dedent('''
    from plugins.plugins import BasePlugin

    class MyPlugin(BasePlugin):
        def on_epoch_end(self, **kwargs):
            print(f"hello world, this is a plugin at the end of epoch number: {kwargs['epoch']}")
            kwargs["arg_update_callback"]("grad_accum", 3)

        def transform_caption(self, caption:str):
            return "user:" + caption
''')


class EveryDream2Test(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bulkhead-ed2-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.config_dir = os.path.join(self.tmp, "project")
        os.makedirs(os.path.join(self.config_dir, "plugins"))
        with open(os.path.join(self.config_dir, "plugins", "my_plugin.py"), "w") as f:
            f.write(ED2_PLUGIN)
        self.cwd = os.path.join(self.tmp, "cwd")
        os.makedirs(self.cwd)

    def peer(self, entry, **kw):
        p = TrainerPeer("python", entry, plugin_dir="", search_path=[self.config_dir, self.cwd, HOME],
                        cwd=self.cwd, meta={"name": entry, "version": "", "description": ""}, **kw)
        self.addCleanup(p.close)
        return p.start()

    def test_user_plugin_next_to_train_json_without_plugins_py(self):
        p = self.peer("plugins.my_plugin.MyPlugin")
        hello = p.handshake()
        self.assertEqual(hello["hooks"], with_batched(["on_epoch_end", "transform_caption"]))
        self.assertEqual(p.call("transform_caption", {"caption": "x"}), (None, {"caption": "user:x"}))
        err, res = p.call("on_epoch_end", sample_kwargs("on_epoch_end"))
        self.assertEqual(res, {"control": [{"action": "set_arg", "name": "grad_accum", "value": 3,
                                            "reason": "arg_update_callback in on_epoch_end"}]})
        p.shutdown()
        self.assertIn("hello world, this is a plugin at the end of epoch number: 1", p.stdout_lines)

    def test_hooks_bulkhead_never_calls_are_named_at_load(self):
        with open(os.path.join(self.config_dir, "plugins", "ti.py"), "w") as f:
            f.write(textwrap.dedent('''
                from plugins.plugins import BasePlugin

                class TI(BasePlugin):
                    def on_backpropagation(self, **kwargs):
                        pass

                    def modify_sample_prompt(self, **kwargs):
                        pass

                    def on_step_end(self, **kwargs):
                        pass
            '''))
        p = self.peer("plugins.ti.TI")
        p.handshake()
        warnings = [l["message"] for l in p.logs if l["level"] == "warning"]
        self.assertEqual(len(warnings), 2, warnings)
        self.assertIn("TI defines on_backpropagation, which Bulkhead does not call", warnings[0])
        self.assertIn("TI defines modify_sample_prompt", warnings[1])
        self.assertIn("model access", warnings[0])

    def test_bundled_example_through_ed2_class_path(self):
        p = self.peer("plugins.example_plugin.ExampleLoggingPlugin")
        hello = p.handshake()
        self.assertIn("on_epoch_start", hello["hooks"])
        self.assertEqual(p.call("on_epoch_start", sample_kwargs("on_epoch_start")), (None, None))
        self.assertIn("on_epoch_start:", p.log_text())
        self.assertIn("arg_update_callback=<callback>", p.log_text())

    def test_user_folder_shadows_bundled_and_copied_ed2_framework_is_ignored(self):
        # A user who copied EveryDream2's whole plugins/ folder (with its own __init__.py and plugins.py)
        os.makedirs(os.path.join(self.config_dir, "plugins", "example_plugin"))
        with open(os.path.join(self.config_dir, "plugins", "__init__.py"), "w") as f:
            f.write("")
        with open(os.path.join(self.config_dir, "plugins", "plugins.py"), "w") as f:
            f.write("raise RuntimeError('EveryDream2 framework must not be imported')\n")
        with open(os.path.join(self.config_dir, "plugins", "example_plugin", "__init__.py"), "w") as f:
            f.write("from plugins.plugins import BasePlugin\nclass ExampleLoggingPlugin(BasePlugin):\n"
                    "    def transform_caption(self, c):\n        return 'mine:' + c\n")
        p = self.peer("plugins.example_plugin.ExampleLoggingPlugin")
        p.handshake()
        self.assertEqual(p.call("transform_caption", {"caption": "x"})[1], {"caption": "mine:x"})
        # the bundled folder is still reachable through the same package
        p2 = self.peer("plugins.grad_accum_schedule.GradAccumSchedule")
        self.assertEqual(p2.handshake()["hooks"], ["on_epoch_end"])

    def test_search_path_order_working_directory_after_config_folder(self):
        os.makedirs(os.path.join(self.cwd, "plugins"))
        with open(os.path.join(self.cwd, "plugins", "my_plugin.py"), "w") as f:
            f.write(ED2_PLUGIN.replace('"user:"', '"cwd:"'))
        with open(os.path.join(self.cwd, "plugins", "only_here.py"), "w") as f:
            f.write(ED2_PLUGIN.replace('"user:"', '"only:"').replace("MyPlugin", "Only"))
        p = self.peer("plugins.my_plugin.MyPlugin")
        p.handshake()
        self.assertEqual(p.call("transform_caption", {"caption": "x"})[1], {"caption": "user:x"})
        p2 = self.peer("plugins.only_here.Only")
        p2.handshake()
        self.assertEqual(p2.call("transform_caption", {"caption": "x"})[1], {"caption": "only:x"})

    def test_missing_class_names_the_entry(self):
        p = self.peer("plugins.my_plugin.NoSuchClass")
        msg = p.recv()
        self.assertEqual(msg[:2], [2, "log"])
        self.assertTrue(msg[2]["message"].startswith("plugins.my_plugin.NoSuchClass: "))
        self.assertIn("no class 'NoSuchClass'", msg[2]["message"])
        self.assertEqual(p.wait(5), 78)

    def test_missing_module_names_the_entry(self):
        p = self.peer("plugins.nothing_here.Foo")
        msg = p.recv()
        self.assertTrue(msg[2]["message"].startswith("plugins.nothing_here.Foo: module 'plugins.nothing_here' not found"))
        self.assertEqual(p.wait(5), 78)

    def _write(self, name, source):
        with open(os.path.join(self.config_dir, "plugins", name), "w") as f:
            f.write(textwrap.dedent(source))

    def test_class_that_is_not_a_plugin_names_the_entry(self):
        self._write("not_plugin.py", """
            class NotAPlugin:
                def transform_caption(self, caption):
                    return caption
        """)
        p = self.peer("plugins.not_plugin.NotAPlugin")
        msg = p.recv()
        self.assertTrue(msg[2]["message"].startswith("plugins.not_plugin.NotAPlugin: "), msg)
        self.assertIn("does not extend BasePlugin", msg[2]["message"])
        self.assertEqual(p.wait(5), 78)

    def test_exception_in_init_names_the_entry_and_the_error(self):
        self._write("broken_init.py", """
            from plugins.plugins import BasePlugin

            class BrokenInit(BasePlugin):
                def __init__(self):
                    raise FileNotFoundError("my_config.json")
        """)
        p = self.peer("plugins.broken_init.BrokenInit")
        msg = p.recv()
        self.assertTrue(msg[2]["message"].startswith("plugins.broken_init.BrokenInit: "), msg)
        self.assertIn("BrokenInit() raised FileNotFoundError: my_config.json", msg[2]["message"])
        self.assertEqual(p.wait(5), 78)

    def test_meta_defaults_when_no_manifest(self):
        p = self.peer("plugins.my_plugin.MyPlugin")
        hello = p.handshake()
        self.assertEqual(hello["plugin"]["name"], "plugins.my_plugin.MyPlugin")
        self.assertEqual(hello["plugin"]["version"], "0.0.0")


if __name__ == "__main__":
    unittest.main()
