"""The C++ SDK's messages validate against schemas/: the real bulkhead-plugin-host serving the
fault test plugin (C++), driven by the schema-validating trainer peer."""
import os
import unittest

from support import TrainerPeer, catalogue, image, sample_kwargs

STATE_HOOKS = catalogue.state_hooks()

BIN = os.environ.get("BULKHEAD_BIN_DIR", "")
LIB = os.environ.get("BULKHEAD_LIB_DIR", "")


@unittest.skipUnless(BIN and LIB, "BULKHEAD_BIN_DIR and BULKHEAD_LIB_DIR name the build (ctest sets them)")
class CppHostConformance(unittest.TestCase):
    def peer(self, options, name="fault"):
        command = ([os.path.join(BIN, "bulkhead-plugin-host"), "--runtime", "cpp",
                    "--entry", os.path.join(LIB, "libbulkhead_test_%s.so" % name)], {})
        p = TrainerPeer("cpp", name, meta={"name": name, "version": "1.0.0", "description": "test"},
                        command=command)
        self.addCleanup(p.close)
        p.start()
        p.handshake(options=options)
        return p

    def test_every_hook_reply_hello_and_shutdown_match_the_schemas(self):
        p = self.peer({"fault": "none"})
        self.assertEqual(p.hello["runtime"]["name"], "cpp")
        # Every training hook; the method hooks are a method's, the state pair a stateful plugin's (below).
        training = [h for h in catalogue.hook_names() if not catalogue.hook(h).get("method") and h not in STATE_HOOKS]
        self.assertEqual(p.hello["hooks"], training)
        for hook in catalogue.hook_names():
            if hook == "transform_caption":
                params = {"caption": "a red square"}
            elif hook == "transform_pil_image":
                params = {"image": image(4, 2)}
            else:
                params = sample_kwargs(hook)
            err, result = p.call(hook, params)  # the peer validates each reply against the hook's schema
            self.assertIsNone(err, hook)
        self.assertEqual(p.call("transform_caption", {"caption": "a red square"})[1], {"caption": "a red square"})
        self.assertEqual(p.shutdown(), 0)

    def test_state_hooks_match_the_schemas(self):
        p = self.peer({"seed": 5}, name="stateful")
        self.assertLessEqual(set(STATE_HOOKS), set(p.hello["hooks"]))
        err, result = p.call("get_state", {"global_step": 3, "reason": "step"})
        self.assertIsNone(err)
        exact = result["state"].pop("exact")  # values for the plugin-state tests' bit-for-bit check
        self.assertEqual(exact["two"], 2.0)
        self.assertIsInstance(exact["two"], float)
        self.assertEqual(result, {"state": {"owner": "stateful", "epochs": 0, "random": 5}})
        self.assertEqual(p.call("set_state", {"state": result["state"], "global_step": 3}), (None, None))
        err, _ = p.call("set_state", {"state": {"owner": "another", "epochs": 1, "random": 2}, "global_step": 3})
        self.assertEqual(err["code"], "hook_failed")
        self.assertIn("given the state of \"another\"", err["message"])
        self.assertEqual(p.shutdown(), 0)

    def test_method_hooks_answer_their_value_or_nil(self):
        p = self.peer({}, name="method_cpp")
        self.assertEqual(p.hello["hooks"], ["describe_method", "suggest_trial", "on_trial_end", "evaluate"])
        err, recipe = p.call("describe_method", sample_kwargs("describe_method"))  # validated against hooks.json
        self.assertIsNone(err, err)
        self.assertEqual(recipe["main_metric"], "val_loss")
        err, suggestion = p.call("suggest_trial", sample_kwargs("suggest_trial"))
        self.assertEqual((err, suggestion), (None, {"params": {"lr": 0.001}}), "the lr the history has not tried")
        err, extra = p.call("evaluate", {"trial": 0, "params": {"lr": 0.001}, "metrics": {"val_loss": 1.0}})
        self.assertEqual((err, extra), (None, {"metrics": {"inverse_val_loss": 0.5}}))
        self.assertEqual(p.call("on_trial_start", sample_kwargs("on_trial_start")), (None, None), "not implemented: nil")
        self.assertEqual(p.shutdown(), 0)

    def test_errors_match_the_schema(self):
        p = self.peer({"fault": "throw", "hooks": ["on_epoch_end"]})
        err, _ = p.call("on_epoch_end", sample_kwargs("on_epoch_end"))
        self.assertEqual(err["code"], "hook_failed")
        self.assertIn("injected failure in on_epoch_end", err["message"])
        err, _ = p.call("on_nothing_at_all", {})
        self.assertEqual(err["code"], "unknown_method")
        err, _ = p.call("transform_caption", {"caption": 42})
        self.assertEqual(err["code"], "bad_params")
        self.assertIsNone(p.call("on_epoch_start", sample_kwargs("on_epoch_start"))[0], "it goes on serving")


if __name__ == "__main__":
    unittest.main()
