"""Protocol conformance of the Python and JavaScript SDK hosts.

Each test starts the real SDK host as a subprocess (the way bulkhead-plugin-host execs it) and
talks to it over a real ZeroMQ socket from a test-side trainer peer. Every message the host sends
is validated against schemas/ (envelope, hello, log, control, error, and each hook's result).
"""
import json
import os
import signal
import subprocess
import time
import unittest

from support import FIXTURES, NODE_READY, TrainerPeer, catalogue, image, sample_kwargs, wait_gone, with_batched

FIXTURE_HOOKS = ["on_epoch_start", "on_step_start", "on_step_end", "on_epoch_end", "on_checkpoint_saved",
                 "transform_caption", "transform_pil_image"]
META = {"name": "conformance", "version": "9.9.9", "description": "from the manifest"}


class ConformanceMixin:
    runtime = None
    ext = None
    lang = None

    def entry(self, stem, cls):
        raise NotImplementedError

    def peer(self, stem="conformance_plugin", cls="Conformance", **kw):
        kw.setdefault("meta", META)
        p = TrainerPeer(self.runtime, self.entry(stem, cls), plugin_dir=os.path.join(FIXTURES, self.lang), **kw)
        self.addCleanup(p.close)
        return p

    def started(self, options=None, **kw):
        p = self.peer(**kw).start()
        p.handshake(options=options)
        return p

    # ---- handshake ------------------------------------------------------------------------------
    def test_hello_is_first_and_valid(self):
        p = self.peer(token="tok-abc").start()
        first = p.recv()
        self.assertEqual(first[:3], [0, 0, "hello"])
        hello = first[3]
        self.assertEqual(hello["protocol"], catalogue.PROTOCOL_VERSION)
        self.assertEqual(hello["token"], "tok-abc")
        self.assertEqual(hello["runtime"]["name"], self.runtime)
        self.assertTrue(hello["runtime"]["version"])
        self.assertEqual(hello["pid"], p.proc.pid)
        self.assertEqual(hello["hooks"], with_batched(FIXTURE_HOOKS))  # overridden methods, in catalogue order
        self.assertEqual(hello["plugin"], {"name": "conformance", "version": "2.0.0", "description": "from the manifest"})

    def test_options_and_scratch_and_configure(self):
        p = self.started(options={"b": 2, "a": "x"})
        err, res = p.call("transform_caption", {"caption": "options"})
        self.assertIsNone(err)
        self.assertEqual(json.loads(res["caption"]), {"a": "x", "b": 2})
        err, res = p.call("transform_caption", {"caption": "scratch"})
        self.assertEqual(res["caption"], p.scratch)

    def test_refused_handshake_exits_1(self):
        p = self.peer().start()
        p.handshake(error={"code": "bad_token", "message": "wrong token"})
        self.assertEqual(p.wait(5), 1)

    def test_protocol_mismatch_exits_1(self):
        p = self.peer().start()
        p.handshake(error={"code": "protocol_mismatch", "message": "trainer speaks 3"})
        self.assertEqual(p.wait(5), 1)

    # ---- transforms -------------------------------------------------------------------------------
    def test_transform_caption(self):
        p = self.started()
        self.assertEqual(p.call("transform_caption", {"caption": "a cat"}), (None, {"caption": "a cat|seen"}))
        self.assertEqual(p.call("transform_caption", {"caption": "ünïcødé ✓"})[1]["caption"], "ünïcødé ✓|seen")

    def test_transform_pil_image_roundtrip(self):
        p = self.started()
        for mode in ("RGB", "RGBA", "L"):
            img = image(5, 3, mode)
            err, res = p.call("transform_pil_image", {"image": img})
            self.assertIsNone(err, err)
            out = res["image"]
            self.assertIsInstance(out["data"], bytes)  # MessagePack bin, not an array
            self.assertEqual((out["width"], out["height"], out["mode"]), (5, 3, mode))
            self.assertEqual(out["data"], bytes(255 - b for b in img["data"]))

    def test_large_images_travel_as_attachments_bit_exact(self):
        # docs/protocol.md section 2.1: the hello takes attachments; a 256x256 image goes and comes
        # back as a frame of its own, every byte intact.
        p = self.started()
        self.assertIs(p.hello.get("attachments"), True)
        img = image(256, 256, "RGB")
        err, res = p.call("transform_pil_image", {"image": img})
        self.assertIsNone(err, err)
        self.assertEqual(res["image"]["data"], bytes(255 - b for b in img["data"]))
        self.assertEqual(p.frames[-1], 2, "the reply's pixels were not an attachment frame")

    def test_transform_may_resize(self):
        p = self.started(options={"image_mode": "resize"})
        err, res = p.call("transform_pil_image", {"image": image(4, 2)})
        self.assertIsNone(err)
        self.assertEqual((res["image"]["width"], res["image"]["height"], len(res["image"]["data"])), (8, 2, 48))

    def test_bad_image_params(self):
        p = self.started()
        bad = image(4, 4)
        bad["data"] = bad["data"][:-1]
        err, res = p.call("transform_pil_image", {"image": bad})
        self.assertEqual(err["code"], "bad_params")
        self.assertIsNone(res)
        err, _ = p.call("transform_caption", {"caption": 7})
        self.assertEqual(err["code"], "bad_params")

    def test_transform_returning_wrong_type_fails(self):
        p = self.started()
        err, _ = p.call("transform_caption", {"caption": "badreturn"})
        self.assertEqual(err["code"], "hook_failed")

    # ---- observers and control ----------------------------------------------------------------------
    def test_observers_return_nil(self):
        p = self.started()
        for hook in ("on_step_start", "on_step_end", "on_epoch_start", "on_epoch_end"):
            self.assertEqual(p.call(hook, sample_kwargs(hook)), (None, None), hook)

    def test_hooks_not_declared_still_answer(self):
        p = self.started()
        self.assertEqual(p.call("on_training_start", sample_kwargs("on_training_start")), (None, None))

    # ---- method hooks (hooks.json: returns_value) -------------------------------------------------
    def test_method_hooks_answer_their_value(self):
        p = self.peer(stem="method_plugin", cls="Method").start()
        hello = p.handshake(options={"suggestion": {"params": {"lr": 0.002}}})
        self.assertEqual(hello["hooks"], ["describe_method", "suggest_trial"])
        err, res = p.call("describe_method", {"project_name": "p", "tunable": ["lr", "batch_size"]})
        self.assertIsNone(err, err)
        self.assertEqual(res, {"search_space": {"lr": [0.001, 0.002]}, "main_metric": "val_loss", "max_evals": 2})
        err, res = p.call("suggest_trial", {"trial": 0, "search_space": {}, "history": [], "higher_is_better": False})
        self.assertEqual((err, res), (None, {"params": {"lr": 0.002}}))

    def test_method_hook_returning_no_map_fails(self):
        p = self.peer(stem="method_plugin", cls="Method").start()
        p.handshake(options={"suggestion": [1, 2]})
        err, _ = p.call("suggest_trial", {"trial": 0, "search_space": {}, "history": [], "higher_is_better": False})
        self.assertEqual(err["code"], "hook_failed")

    def test_method_hooks_not_implemented_answer_nil(self):
        p = self.started()
        self.assertEqual(p.call("describe_method", {"project_name": "p", "tunable": []}), (None, None))

    def test_ed_state_attribute_access(self):
        p = self.started()
        self.assertEqual(p.call("on_step_end", sample_kwargs("on_step_end")), (None, None))
        self.assertIn("ga=1 lr=0.0001 bs=2", p.log_text())

    def test_arg_update_callback_only_where_hooks_json_says(self):
        p = self.started(options={"grad_accum": 4})
        flagged = catalogue.arg_update_hooks()
        self.assertEqual(sorted(flagged), ["on_epoch_end", "on_epoch_start"])
        err, res = p.call("on_epoch_start", sample_kwargs("on_epoch_start"))
        self.assertIsNone(err)
        self.assertEqual(res["control"][0]["action"], "set_arg")
        self.assertEqual((res["control"][0]["name"], res["control"][0]["value"]), ("grad_accum", 4))
        err, res = p.call("on_epoch_end", sample_kwargs("on_epoch_end"))
        self.assertEqual(res["control"][0]["value"], 5)
        # on_step_start raises if it gets the callback
        self.assertEqual(p.call("on_step_start", sample_kwargs("on_step_start")), (None, None))

    def test_arg_update_callback_other_name_raises_in_plugin(self):
        p = self.started(options={"bad_arg": "learning_rate"})
        err, res = p.call("on_epoch_end", sample_kwargs("on_epoch_end"))
        self.assertEqual(err["code"], "hook_failed")
        self.assertIn("Unrecognized arg: learning_rate", err["message"])
        # and the plugin goes on serving
        self.assertEqual(p.call("transform_caption", {"caption": "x"})[1], {"caption": "x|seen"})

    def test_control_helpers_ride_in_the_reply(self):
        p = self.started()
        err, res = p.call("transform_caption", {"caption": "stop"})
        self.assertEqual(res, {"caption": "stop|seen", "control": [{"action": "stop", "reason": "asked"}]})
        err, res = p.call("transform_caption", {"caption": "ckpt"})
        self.assertEqual(res["control"], [{"action": "save_checkpoint", "tag": "t1", "reason": "r"}])
        err, res = p.call("on_checkpoint_saved", sample_kwargs("on_checkpoint_saved"))
        self.assertEqual(res, {"control": [{"action": "set_arg", "name": "grad_accum", "value": 2}]})

    def test_control_outside_a_hook_is_a_notification(self):
        p = self.started()
        self.assertEqual(p.call("transform_caption", {"caption": "thread"})[1], {"caption": "thread|seen"})
        end = time.monotonic() + 5
        while not p.control and time.monotonic() < end:
            p.drain(0.1)
        self.assertEqual(p.control, [{"action": "save_checkpoint", "tag": "late", "reason": "from a thread"}])

    # ---- errors ------------------------------------------------------------------------------------------
    def test_exception_becomes_hook_failed_with_traceback(self):
        p = self.started()
        err, res = p.call("transform_caption", {"caption": "raise"})
        self.assertIsNone(res)
        self.assertEqual(err["code"], "hook_failed")
        self.assertIn("boom from plugin", err["message"])
        self.assertIn("conformance_plugin", err["traceback"])
        self.assertEqual(p.call("transform_caption", {"caption": "after"})[1], {"caption": "after|seen"})

    def test_unknown_method(self):
        p = self.started()
        err, res = p.call("on_backpropagation", {})
        self.assertEqual(err["code"], "unknown_method")
        self.assertIsNone(res)
        err, _ = p.call("hello", {})
        self.assertEqual(err["code"], "unknown_method")

    def test_requests_served_in_order(self):
        p = self.started()
        ids = [p.request("transform_caption", {"caption": "c%d" % i}) for i in range(20)]
        replies = []
        while len(replies) < 20:
            m = p.recv()
            if m[0] == 1:
                replies.append(m)
        self.assertEqual([m[1] for m in replies], ids)
        self.assertEqual([m[3]["caption"] for m in replies], ["c%d|seen" % i for i in range(20)])

    def test_garbage_is_ignored(self):
        p = self.started()
        p.sock.send(b"\xc1not msgpack")
        p.sock.send(b"\x93\x07\x01\x02")  # [7, 1, 2]
        self.assertEqual(p.call("transform_caption", {"caption": "x"})[1], {"caption": "x|seen"})

    # ---- logging and output ------------------------------------------------------------------------------
    def test_log_notifications_before_reply(self):
        p = self.started()
        rid = p.request("transform_caption", {"caption": "log"})
        msgs = []
        while True:
            m = p.recv()
            msgs.append(m)
            if m[0] == 1 and m[1] == rid:
                break
        self.assertIn([2, "log", {"level": "info", "message": "logged: log"}], msgs)
        p.call("transform_caption", {"caption": "warn"})
        self.assertIn({"level": "warning", "message": "warned: warn"}, p.logs)

    def test_print_goes_to_stdout(self):
        p = self.started()
        p.call("transform_caption", {"caption": "print"})
        end = time.monotonic() + 3
        while "printed: print" not in p.stdout_lines and time.monotonic() < end:
            time.sleep(0.02)
        self.assertIn("printed: print", p.stdout_lines)

    # ---- loading failures ------------------------------------------------------------------------------------
    def assert_load_failure(self, stem, cls, *needles):
        p = self.peer(stem=stem, cls=cls).start()
        msg = p.recv()
        self.assertEqual(msg[:2], [2, "log"], "the first message must be the error log, not hello")
        self.assertEqual(msg[2]["level"], "error")
        entry = p.sent_entry
        self.assertTrue(msg[2]["message"].startswith(entry + ": "), msg[2]["message"])
        for n in needles:
            self.assertIn(n, msg[2]["message"])
        self.assertEqual(p.wait(5), 78)
        self.assertFalse(any(m[0] == 0 for m in p.messages), "no hello after a load failure")
        return msg[2]["message"]

    def test_load_failure_not_a_plugin(self):
        self.assert_load_failure("bad_not_subclass", "NotAPlugin", "BasePlugin")

    def test_load_failure_init_raises(self):
        self.assert_load_failure("bad_init", "Exploding", "cannot start: no config")

    def test_load_failure_import_error(self):
        self.assert_load_failure("bad_import", "X", "module_that_does_not_exist_anywhere")

    def test_load_failure_missing_module(self):
        self.assert_load_failure("no_such_file", "X", "not found")

    def test_configure_failure_exits_78(self):
        p = self.peer(stem="bad_configure", cls="BadConfigure").start()
        p.handshake()
        p.drain(0.5)
        self.assertEqual(p.wait(5), 78)
        self.assertTrue(any("option gamma must be positive" in l["message"] and l["level"] == "error" for l in p.logs))

    # ---- shutdown and parent death ------------------------------------------------------------------------------
    def test_shutdown_exits_0(self):
        p = self.started()
        t = time.monotonic()
        self.assertEqual(p.shutdown("done"), 0)
        self.assertLess(time.monotonic() - t, 2.0)

    def test_shutdown_before_welcome_exits_0(self):
        p = self.peer().start()
        p.recv()  # hello
        p.send([2, "shutdown", {"reason": "changed my mind"}])
        self.assertEqual(p.wait(5), 0)

    def _orphan(self, busy):
        p = self.peer().start(via_shell=True)
        hello = p.handshake()
        pid = hello["pid"]
        self.assertNotEqual(pid, p.proc.pid)
        if busy:
            p.request("transform_caption", {"caption": "sleep:30"})
            time.sleep(0.2)
        os.kill(p.proc.pid, signal.SIGKILL)  # the "trainer" (the plugin's parent) dies
        t = time.monotonic()
        self.assertTrue(wait_gone(pid, 3.0), "plugin still running 3 s after its parent died")
        self.assertLess(time.monotonic() - t, 1.5)

    def test_parent_death_idle(self):
        self._orphan(busy=False)

    def test_parent_death_while_in_a_hook(self):
        self._orphan(busy=True)

    def test_trainer_pid_gone(self):
        fake_trainer = subprocess.Popen(["sleep", "60"])
        self.addCleanup(fake_trainer.kill)
        p = self.peer().start(parent_pid=fake_trainer.pid)
        pid = p.handshake()["pid"]
        fake_trainer.kill()
        fake_trainer.wait()
        t = time.monotonic()
        self.assertTrue(wait_gone(pid, 3.0))
        self.assertLess(time.monotonic() - t, 1.5)


    # ---- plugin state ---------------------------------------------------------------------------
    def test_state_attributes_are_kept_whole_and_plain(self):
        p = self.started(stem="stateful_plugin", cls="Stateful")
        self.assertEqual(p.hello["hooks"], ["on_step_end", "get_state", "set_state"])
        for _ in range(2):
            self.assertIsNone(p.call("on_step_end", sample_kwargs("on_step_end"))[0])
        get = {"global_step": 2, "reason": "step"}
        self.assertEqual(p.call("get_state", get), (None, {"state": {"count": 2, "names": [], "blob": b""}}))
        state = {"count": 7, "names": ["a"], "blob": b"\x00\x01"}
        self.assertEqual(p.call("set_state", {"state": state, "global_step": 2}), (None, None))
        self.assertEqual(p.call("get_state", get), (None, {"state": state}))
        # A state with a name it does not keep is refused whole: nothing of it is taken.
        err, _ = p.call("set_state", {"state": {"count": 1, "evil": 2}, "global_step": 2})
        self.assertEqual(err["code"], "hook_failed")
        self.assertIn("evil", err["message"])
        self.assertEqual(p.call("get_state", get), (None, {"state": state}))

    def test_a_state_that_is_not_plain_data_is_an_error_naming_where(self):
        p = self.started(options={"unplain": True}, stem="stateful_plugin", cls="Stateful")
        self.assertIsNone(p.call("on_step_end", sample_kwargs("on_step_end"))[0])
        err, _ = p.call("get_state", {"global_step": 1, "reason": "step"})
        self.assertEqual(err["code"], "hook_failed")
        self.assertIn("names", err["message"])
        self.assertIn("plain data", err["message"])


class PythonSdkConformance(ConformanceMixin, unittest.TestCase):
    runtime = "python"
    lang = "python"

    def entry(self, stem, cls):
        return "%s.%s" % (stem, cls)

    def test_numpy_like_result_is_converted(self):
        p = self.started(options={"image_mode": "array"})
        img = image(3, 2)
        err, res = p.call("transform_pil_image", {"image": img})
        self.assertIsNone(err, err)
        self.assertEqual(res["image"]["data"], bytes(255 - b for b in img["data"]))

    def test_ed_state_object_attribute_explains(self):
        p = self.started(options={"touch_unet": True})
        err, _ = p.call("on_step_end", sample_kwargs("on_step_end"))
        self.assertEqual(err["code"], "hook_failed")
        self.assertIn("out of process", err["message"])


@unittest.skipUnless(NODE_READY, "node_modules missing: run scripts/install-node-deps.sh")
class NodeSdkConformance(ConformanceMixin, unittest.TestCase):
    runtime = "node"
    lang = "node"

    def entry(self, stem, cls):
        return stem + ".js"


if __name__ == "__main__":
    unittest.main()
