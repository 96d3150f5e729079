"""A grad_accum schedule (EveryDream2's Accumulnator): grad_accum grows from begin_grad_accum at
begin_epoch to end_grad_accum at end_epoch, on a linear or log curve. At the end of each epoch it
asks for the next epoch's value through arg_update_callback (a set_arg control request).

Options: begin_epoch, end_epoch, begin_grad_accum, end_grad_accum, curve ("linear" | "log").
"""
import logging
import math

from plugins.plugins import BasePlugin

log = logging.getLogger("grad_accum_schedule")


def schedule(epoch, begin_epoch, end_epoch, begin_ga, end_ga, curve="linear"):
    """grad_accum for a 0-based epoch."""
    if epoch <= begin_epoch or end_epoch <= begin_epoch:
        return max(1, int(begin_ga if epoch <= begin_epoch else end_ga))
    if epoch >= end_epoch:
        return max(1, int(end_ga))
    t = (epoch - begin_epoch) / float(end_epoch - begin_epoch)
    if curve == "log":
        value = math.exp(math.log(begin_ga) + (math.log(end_ga) - math.log(begin_ga)) * t)
    else:
        value = begin_ga + (end_ga - begin_ga) * t
    return max(1, int(round(value)))


class GradAccumSchedule(BasePlugin):
    def configure(self):
        o = self.options
        self.begin_epoch = int(o.get("begin_epoch", 3))
        self.end_epoch = int(o.get("end_epoch", 10))
        self.begin_ga = int(o.get("begin_grad_accum", 1))
        self.end_ga = int(o.get("end_grad_accum", 16))
        self.curve = str(o.get("curve", "linear"))
        if self.curve not in ("linear", "log"):
            raise ValueError("curve must be 'linear' or 'log', not %r" % self.curve)
        if self.begin_ga < 1 or self.end_ga < 1:
            raise ValueError("grad_accum values must be at least 1")
        self.last_sent = None
        log.info("grad_accum %d at epoch %d -> %d at epoch %d (%s)",
                 self.begin_ga, self.begin_epoch, self.end_ga, self.end_epoch, self.curve)

    def value_for(self, epoch):
        return schedule(epoch, self.begin_epoch, self.end_epoch, self.begin_ga, self.end_ga, self.curve)

    def on_epoch_end(self, **kwargs):
        if not hasattr(self, "last_sent"):
            self.configure()
        next_epoch = int(kwargs["epoch"]) + 1
        value = self.value_for(next_epoch)
        if value != self.last_sent:
            log.info("epoch %d: grad_accum -> %d", next_epoch, value)
            kwargs["arg_update_callback"]("grad_accum", value)
            self.last_sent = value
