"""test_method: a method plugin whose answers the study tests choose through its options.

describe: describe_method's whole answer. suggest: what suggest_trial does: "first" (the first
value of each list, the middle of each range), "crash" (the process dies), "nonsense" (params
that are not in the search space), "hang" (never answers). evaluate: the metrics evaluate returns.
"""
import os
import time

from bulkhead_plugin import BasePlugin


class TestMethod(BasePlugin):
    def describe_method(self, **kwargs):
        return self.options.get("describe", {"search_space": {"lr": [0.001]}, "main_metric": "val_loss"})

    def suggest_trial(self, trial, search_space, history, higher_is_better):
        mode = self.options.get("suggest", "first")
        if mode == "crash":
            os._exit(3)
        if mode == "hang":
            time.sleep(3600)
        if mode == "nonsense":
            return {"params": {"data_root": "/etc"}}
        params = {}
        for key, space in search_space.items():
            params[key] = space[0] if isinstance(space, list) else (space["min"] + space["max"]) / 2
        return {"params": params}

    def on_trial_start(self, **kwargs):
        self.log("info", "trial %d starts with %r" % (kwargs["trial"], kwargs["params"]))

    def on_trial_end(self, **kwargs):
        self.log("info", "trial %d ended %s, score %r" % (kwargs["trial"], kwargs["status"], kwargs["score"]))

    def evaluate(self, **kwargs):
        metrics = dict(self.options.get("evaluate") or {})
        samples = kwargs.get("samples")
        if samples is not None:  # the final sample grid, as the wire carries images
            data = samples["data"]
            metrics["sample_brightness"] = sum(data) / (255.0 * len(data))
        return {"metrics": metrics}

    def on_study_end(self, **kwargs):
        self.log("info", "study over: best trial %r" % (kwargs["best_trial"],))
