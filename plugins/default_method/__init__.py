"""default_method: Embedding Studio's Default Fine Tuning Method, as a Bulkhead method plugin.

Embedding Studio's method names its settings, a hyperparameter grid, accumulators
(MetricsAccumulator: mean, sliding window, min, max) and a main metric, and keeps the best model.
This one does the same for Bulkhead's trainer: a grid over lr and batch_size, accumulators over
loss and val_loss, val_loss as the main metric (lower is better), the best trial kept in best/.

Options (train.json's "method": {"name": "default_method", "options": {...}}):
  lr, batch_size   lists of values: the grid (each may also be {"min", "max", "log"} for random search)
  settings         train.json knobs every trial gets, e.g. {"max_epochs": 2}
  search           "grid" (every combination), "random" (seeded draws, max_evals of them) or
                   "optuna" (Optuna's TPE sampler proposes each trial from the history, when
                   Debian's python3-optuna is installed; random search otherwise)
  max_evals        trials for random and optuna search (a grid runs all of itself)
  main_metric      what scores a trial; sliding_window: the window of sliding_loss
"""
import random

from bulkhead_plugin import BasePlugin


class DefaultMethod(BasePlugin):
    name = "default_method"

    def configure(self):
        self.search = self.options.get("search", "grid")
        self.optuna = None
        if self.search == "optuna":
            try:
                import optuna  # Debian: apt-get install python3-optuna
                optuna.logging.set_verbosity(optuna.logging.WARNING)
                self.optuna = optuna
            except ImportError:
                self.log("warning", "search \"optuna\" asked, but Optuna is not installed: random search instead")
                self.search = "random"

    def describe_method(self, **kwargs):
        window = int(self.options.get("sliding_window", 10))
        answer = {
            "settings": dict(self.options.get("settings", {})),
            "search_space": {"lr": self.options["lr"], "batch_size": self.options["batch_size"]},
            "algorithm": {"grid": "grid", "random": "random", "optuna": "plugin"}[self.search],
            "accumulators": [
                {"metric": "loss", "mean": True, "sliding_window": window, "min": True, "max": True},
                {"metric": "val_loss", "mean": True, "min": True},
            ],
            "main_metric": self.options.get("main_metric", "val_loss"),
            "higher_is_better": False,
            "keep": "best",
        }
        if self.search != "grid":
            answer["max_evals"] = int(self.options.get("max_evals", 8))
        return answer

    def suggest_trial(self, trial, search_space, history, higher_is_better):
        """Optuna's TPE, told every finished trial of the history (failed ones as failed); without
        Optuna, a draw seeded by the trial's number."""
        optuna = self.optuna
        if optuna is None:
            rng = random.Random(trial)
            return {"params": {key: rng.choice(space) if isinstance(space, list) else rng.uniform(space["min"], space["max"])
                               for key, space in search_space.items()}}
        study = optuna.create_study(direction="maximize" if higher_is_better else "minimize",
                                    sampler=optuna.samplers.TPESampler(seed=trial))
        distributions = {key: self._distribution(space) for key, space in search_space.items()}
        for past in history:
            state = optuna.trial.TrialState.COMPLETE if past["status"] == "ok" else optuna.trial.TrialState.FAIL
            try:
                study.add_trial(optuna.trial.create_trial(
                    params=past["params"], distributions=distributions, state=state,
                    value=past["score"] if state == optuna.trial.TrialState.COMPLETE else None))
            except ValueError:  # a value outside today's distributions: it says nothing about them
                continue
        proposal = study.ask(distributions)
        return {"params": dict(proposal.params)}

    def _distribution(self, space):
        optuna = self.optuna
        if isinstance(space, list):
            return optuna.distributions.CategoricalDistribution(space)
        if space.get("integer"):
            return optuna.distributions.IntDistribution(int(space["min"]), int(space["max"]), log=bool(space.get("log")))
        return optuna.distributions.FloatDistribution(space["min"], space["max"], log=bool(space.get("log")))

    def on_trial_end(self, **kwargs):
        self.log("info", "trial %03d: %s, score %r" % (kwargs["trial"], kwargs["status"], kwargs["score"]))

    def on_study_end(self, **kwargs):
        self.log("info", "best trial: %r (score %r)" % (kwargs["best_trial"], kwargs["best_score"]))
