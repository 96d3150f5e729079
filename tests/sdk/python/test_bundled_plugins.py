"""The bundled Python and JavaScript plugins, and the no-SDK plugin, over the real protocol."""
import json
import os
import shutil
import tempfile
import unittest

import jsonschema

from support import HOME, NODE_READY, TrainerPeer, catalogue, image, load_json, sample_kwargs, with_batched
from bulkhead_plugin.schema import validator

MINE = ["example_plugin", "grad_accum_schedule", "rolling_checkpoint", "color_grade", "caption_case_js",
        "default_method", "lr_search_js"]
RAW = os.path.join(HOME, "tests", "plugins", "raw-python")


def folder(name):
    return os.path.join(HOME, "plugins", name)


class ManifestTest(unittest.TestCase):
    def test_manifests_valid_and_hooks_match_hello(self):
        v = validator("plugin.schema.json")
        for path in [folder(n) for n in MINE] + [RAW]:
            with self.subTest(path=path):
                m = load_json(os.path.join(path, "plugin.json"))
                v.validate(m)
                self.assertEqual(m["name"], os.path.basename(path))
                for h in m["hooks"]:
                    self.assertIn(h, catalogue.hook_names())
                if m["runtime"] == "node" and not NODE_READY:
                    continue
                p = TrainerPeer.from_manifest(path)
                self.addCleanup(p.close)
                hello = p.start().handshake()
                # An SDK lists the batched transforms too; the raw plugin lists what it answers by hand.
                sdk_hooks = m["hooks"] if path == RAW else with_batched(m["hooks"])
                self.assertEqual(sorted(hello["hooks"]), sorted(sdk_hooks))
                self.assertEqual(hello["plugin"]["name"], m["name"])
                self.assertEqual(hello["plugin"]["version"], m["version"])
                self.assertEqual(p.shutdown(), 0)


class BundledTest(unittest.TestCase):
    def start(self, name, options=None, path=None):
        p = TrainerPeer.from_manifest(path or folder(name))
        self.addCleanup(p.close)
        p.start().handshake(options=options)
        return p

    def test_example_plugin_logs_kwargs(self):
        p = self.start("example_plugin")
        for hook in p.hello["hooks"]:
            self.assertEqual(p.call(hook, sample_kwargs(hook)), (None, None), hook)
        text = p.log_text()
        self.assertIn("on_step_end: batch=", text)
        self.assertIn("ed_state=EdState(batch_size=2, grad_accum=1, lr=0.0001)", text)
        p.shutdown()
        self.assertTrue(any("ExampleLoggingPlugin: loaded" in l for l in p.stdout_lines))

    def test_grad_accum_schedule(self):
        p = self.start("grad_accum_schedule", {"begin_epoch": 1, "end_epoch": 5, "begin_grad_accum": 1,
                                               "end_grad_accum": 16, "curve": "log"})
        sent = {}
        for epoch in range(0, 7):
            kw = sample_kwargs("on_epoch_end")
            kw["epoch"] = epoch
            err, res = p.call("on_epoch_end", kw)
            self.assertIsNone(err, err)
            if res:
                (req,) = res["control"]
                self.assertEqual((req["action"], req["name"]), ("set_arg", "grad_accum"))
                sent[epoch + 1] = req["value"]
        self.assertEqual(sent, {1: 1, 2: 2, 3: 4, 4: 8, 5: 16})

        p2 = self.start("grad_accum_schedule", {"begin_epoch": 0, "end_epoch": 4, "end_grad_accum": 9, "curve": "linear"})
        values = []
        for epoch in range(0, 4):
            kw = sample_kwargs("on_epoch_end")
            kw["epoch"] = epoch
            res = p2.call("on_epoch_end", kw)[1]
            values.append(res["control"][0]["value"] if res else None)
        self.assertEqual(values, [3, 5, 7, 9])

    def test_grad_accum_schedule_bad_curve_fails_to_configure(self):
        p = TrainerPeer.from_manifest(folder("grad_accum_schedule"))
        self.addCleanup(p.close)
        p.start().handshake(options={"curve": "cubic"})
        p.drain(0.5)
        self.assertEqual(p.wait(5), 78)
        self.assertIn("curve must be", p.log_text())

    def test_rolling_checkpoint(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        p = self.start("rolling_checkpoint", {"every_n_steps": 2, "every_n_epochs": 0})
        asked = []
        for step in range(4):
            kw = sample_kwargs("on_step_end")
            kw["global_step"] = step
            err, res = p.call("on_step_end", kw)
            if res:
                asked.append((step, res["control"]))
        self.assertEqual([s for s, _ in asked], [1, 3])
        self.assertEqual(asked[0][1][0]["action"], "save_checkpoint")
        self.assertEqual(asked[0][1][0]["tag"], "rolling")
        # the trainer reports the saves; each new one asks the trainer to delete the previous
        # (the plugin's jail cannot see the run folder: it never deletes anything itself)
        deletions = []
        for i in range(3):
            path = os.path.join(tmp, "rolling-%d.pt" % i)
            kw = {"path": path, "reason": "requested", "tag": "rolling", "epoch": 0, "global_step": i}
            err, res = p.call("on_checkpoint_saved", kw)
            self.assertIsNone(err)
            deletions += [r["path"] for r in (res or {}).get("control", []) if r["action"] == "delete_checkpoint"]
        self.assertEqual(deletions, [os.path.join(tmp, "rolling-0.pt"), os.path.join(tmp, "rolling-1.pt")])
        other = os.path.join(tmp, "epoch-1.pt")
        self.assertEqual(p.call("on_checkpoint_saved", {"path": other, "reason": "epoch", "epoch": 1, "global_step": 5}),
                         (None, None))
        err, res = p.call("on_training_end", sample_kwargs("on_training_end"))
        self.assertEqual([r["path"] for r in res["control"]], [os.path.join(tmp, "rolling-2.pt")])

    def test_rolling_checkpoint_epochs(self):
        p = self.start("rolling_checkpoint", {"every_n_epochs": 2})
        results = []
        for epoch in range(4):
            kw = sample_kwargs("on_epoch_end")
            kw["epoch"] = epoch
            results.append(p.call("on_epoch_end", kw)[1])
        self.assertEqual([bool(r) for r in results], [False, True, False, True])

    def test_color_grade(self):
        p = self.start("color_grade", {"gamma": 1.0, "saturation": 1.0, "contrast": 1.0, "brightness": 1.0})
        img = image(6, 4)
        self.assertEqual(p.call("transform_pil_image", {"image": img})[1]["image"]["data"], img["data"])
        p2 = self.start("color_grade", {"gamma": 2.0, "saturation": 0.0, "contrast": 1.0})
        for mode in ("RGB", "RGBA", "L"):
            img = image(6, 4, mode, fill={"RGB": [64, 128, 32], "RGBA": [64, 128, 32, 7], "L": [64]}[mode])
            out = p2.call("transform_pil_image", {"image": img})[1]["image"]
            self.assertEqual((out["width"], out["height"], out["mode"], len(out["data"])),
                             (6, 4, mode, len(img["data"])))
            if mode == "RGB":
                r, g, b = out["data"][:3]
                self.assertTrue(r == g == b, "saturation 0 gives grey")
            if mode == "RGBA":
                self.assertEqual(out["data"][3], 7, "alpha untouched")
            if mode == "L":
                self.assertGreater(out["data"][0], 64, "gamma 2 brightens")

    @unittest.skipUnless(NODE_READY, "node_modules missing: run scripts/install-node-deps.sh")
    def test_default_method_grid_and_its_search_without_optuna(self):
        p = self.start("default_method", {"lr": [0.001, 0.002], "batch_size": [8], "settings": {"max_epochs": 2}})
        err, recipe = p.call("describe_method", {"project_name": "p", "tunable": ["lr", "batch_size"]})
        self.assertIsNone(err, err)
        self.assertEqual(recipe["algorithm"], "grid")
        self.assertEqual(recipe["search_space"], {"lr": [0.001, 0.002], "batch_size": [8]})
        self.assertEqual(recipe["settings"], {"max_epochs": 2})
        self.assertEqual(recipe["main_metric"], "val_loss")
        self.assertNotIn("max_evals", recipe, "a grid runs all of itself")
        try:
            import optuna  # noqa: F401
            have_optuna = True
        except ImportError:
            have_optuna = False
        q = self.start("default_method", {"search": "optuna", "max_evals": 3})
        err, recipe = q.call("describe_method", {"project_name": "p", "tunable": ["lr"]})
        self.assertEqual(recipe["algorithm"], "plugin" if have_optuna else "random")
        self.assertEqual(recipe["max_evals"], 3)
        space = {"lr": {"min": 0.001, "max": 0.01, "log": True}, "batch_size": [8, 16]}
        history = [{"trial": 0, "params": {"lr": 0.002, "batch_size": 8}, "status": "ok", "score": 0.5},
                   {"trial": 1, "params": {"lr": 0.004, "batch_size": 16}, "status": "failed", "score": None}]
        err, res = q.call("suggest_trial", {"trial": 2, "search_space": space, "history": history, "higher_is_better": False})
        self.assertIsNone(err, err)
        self.assertTrue(0.001 <= res["params"]["lr"] <= 0.01, res)
        self.assertIn(res["params"]["batch_size"], [8, 16])

    @unittest.skipUnless(NODE_READY, "node_modules missing: run scripts/install-node-deps.sh")
    def test_lr_search_js_steps_from_the_best(self):
        p = self.start("lr_search_js", {"min_lr": 0.001, "max_lr": 0.004, "max_evals": 4})
        err, recipe = p.call("describe_method", {"project_name": "p", "tunable": ["lr"]})
        self.assertIsNone(err, err)
        self.assertEqual(recipe["algorithm"], "plugin")
        space = recipe["search_space"]
        err, first = p.call("suggest_trial", {"trial": 0, "search_space": space, "history": [], "higher_is_better": False})
        self.assertAlmostEqual(first["params"]["lr"], 0.002)
        history = [{"trial": 0, "params": first["params"], "status": "ok", "score": 1.0}]
        err, second = p.call("suggest_trial", {"trial": 1, "search_space": space, "history": history, "higher_is_better": False})
        self.assertTrue(0.001 <= second["params"]["lr"] < 0.002, second)

    def test_caption_case_js(self):
        p = self.start("caption_case_js", {"case": "lower", "prefix": "photo of "})
        self.assertEqual(p.call("transform_caption", {"caption": "  A  Red\tSQUARE , on grass  "})[1],
                         {"caption": "photo of a red square, on grass"})
        self.assertEqual(p.call("transform_caption", {"caption": "photo of a dog"})[1], {"caption": "photo of a dog"})
        p2 = self.start("caption_case_js", {"case": "sentence", "collapse_whitespace": False})
        self.assertEqual(p2.call("transform_caption", {"caption": "a CAT"})[1], {"caption": "A cat"})

    def test_raw_python_plugin(self):
        p = self.start(None, {"stop_at_step": 3}, path=RAW)
        self.assertEqual(p.hello["runtime"]["name"], "python-raw")
        self.assertEqual(p.call("transform_caption", {"caption": "x"}), (None, {"caption": "x, raw"}))
        kw = sample_kwargs("on_step_end")
        kw["global_step"] = 1
        self.assertEqual(p.call("on_step_end", kw), (None, None))
        kw["global_step"] = 3
        err, res = p.call("on_step_end", kw)
        self.assertEqual(res["control"][0]["action"], "stop")
        self.assertEqual(p.call("on_backpropagation", {})[0]["code"], "unknown_method")
        self.assertEqual(p.shutdown(), 0)


if __name__ == "__main__":
    unittest.main()
