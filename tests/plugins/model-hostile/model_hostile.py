"""model-hostile (test plugin): teaches the model the token "zorblax" (rows trainable, the rest
frozen), then attacks through on_model_step. Option "attack":
  none      never writes
  valid     replaces zorblax's row with 0.05 everywhere, once (at global step 0), through the shared
            region; 20 ms after its reply it writes NaN over that slot (too late: the trainer copied it)
  sequence  attack ATTACKS[global_step] while there is one, then none (so a restart goes on with the next)
  freeze_everything  on_model_load replies {"freeze_rest": true} alone, which would leave nothing to train
  from_unknown  on_model_load starts zorblax from the special token "<unknown>" (allowed: it has a row)
  slow      takes 150 ms over every on_model_step, holding its region slot: later steps find none free
  <name>    that attack on every on_model_step
Every attack must be refused whole, counted as an invalid reply, and change no weight.
on_model_save returns zorblax's row as textual_inversions/zorblax.bin (raw float32).
on_model_load tries to shrink and to grow the region (ftruncate) and logs what the kernel said.
"""
import errno
import os
import threading
import time

from bulkhead_plugin import BasePlugin, model

EMBEDDING = "caption.words.weight"
ATTACKS = ["nan", "inf", "shape", "frozen_row", "outside", "ungranted_parameter", "huge_norm", "stale", "future",
           "short_data", "half_valid", "region_outside", "region_other_slot", "crash"]


class ModelHostile(BasePlugin):
    def on_model_load(self, vocabulary, **kwargs):
        region = model.REGION
        for size in (0, 2 * region.slots * region.slot_bytes):
            try:
                os.ftruncate(region.fd, size)
                self.log("error", "ftruncate(region, %d) succeeded" % size)
            except OSError as e:
                self.log("info", "ftruncate(region, %d) refused: %s" % (size, errno.errorcode.get(e.errno, e.errno)))
        if self.options.get("attack") == "freeze_everything":  # names no trainable row: must be refused
            return {"freeze_rest": True}
        init_from = "<unknown>" if self.options.get("attack") == "from_unknown" else "circle"
        return {"add_tokens": [{"token": "zorblax", "init_from": init_from}], "trainable": {EMBEDDING: ["zorblax"]},
                "freeze_rest": True}

    def attack(self, step):
        attack = self.options.get("attack", "none")
        if attack == "sequence":
            return ATTACKS[step] if step < len(ATTACKS) else "none"
        if attack == "valid":
            return "valid" if step == 0 else "none"
        if attack in ("freeze_everything", "from_unknown"):  # on on_model_load only
            return "none"
        return attack

    def on_model_step(self, global_step, tensors, **kwargs):
        if not tensors:  # no region slot was free: the trainer did not wait
            self.log("info", "step %d came without tensors" % global_step)
            return None
        if self.options.get("attack") == "slow":
            time.sleep(0.15)
            return None
        rows = model.by_parameter(tensors)[EMBEDDING]
        row, values = rows.rows[0], rows.values
        width = len(values[0])
        good = [[0.05] * width]
        attack = self.attack(global_step)
        if attack == "none":
            return None
        self.log("info", "attack %s at step %d" % (attack, global_step))
        if attack == "valid":
            reply = model.updates(model.update(EMBEDDING, [row], good, global_step, region=True))
            slot = reply["updates"][0]["tensor"]["slot"]
            start = slot["index"] * model.REGION.slot_bytes + slot["offset"]

            def overwrite():
                time.sleep(0.02)
                model.REGION.map[start:start + slot["bytes"]] = b"\xff\xff\xff\x7f" * (slot["bytes"] // 4)  # NaN
            threading.Thread(target=overwrite, daemon=True).start()
            return reply
        if attack == "nan":
            return model.updates(model.update(EMBEDDING, [row], [[float("nan")] + [0.0] * (width - 1)], global_step))
        if attack == "inf":
            return model.updates(model.update(EMBEDDING, [row], [[float("inf")] * width], global_step))
        if attack == "shape":
            return model.updates(model.update(EMBEDDING, [row], [[0.0] * (width + 1)], global_step))
        if attack == "frozen_row":  # "circle", a row the trainer froze
            return model.updates(model.update(EMBEDDING, [3], good, global_step))
        if attack == "outside":
            return model.updates(model.update(EMBEDDING, [row + 1000], good, global_step))
        if attack == "ungranted_parameter":
            return model.updates(model.update("conv_out.bias", [0], [[0.0]], global_step))
        if attack == "huge_norm":
            return model.updates(model.update(EMBEDDING, [row], [[1000.0] * width], global_step))
        if attack == "stale":
            return model.updates(model.update(EMBEDDING, [row], good, max(0, global_step - 100)))
        if attack == "future":
            return model.updates(model.update(EMBEDDING, [row], good, global_step + 100))
        if attack == "short_data":
            update = model.update(EMBEDDING, [row], good, global_step)
            update["tensor"]["data"] = update["tensor"]["data"][:-4]
            return model.updates(update)
        if attack == "half_valid":  # one good update, one bad: neither may be applied
            return model.updates(model.update(EMBEDDING, [row], good, global_step),
                                 model.update(EMBEDDING, [3], good, global_step))
        if attack == "region_outside":
            update = model.update(EMBEDDING, [row], good, global_step, region=True)
            update["tensor"]["slot"]["offset"] = model.REGION.slot_bytes
            return model.updates(update)
        if attack == "region_other_slot":
            update = model.update(EMBEDDING, [row], good, global_step, region=True)
            update["tensor"]["slot"]["index"] = (update["tensor"]["slot"]["index"] + 1) % model.REGION.slots
            return model.updates(update)
        if attack == "crash":  # dies with its write in hand
            os._exit(3)
        raise ValueError("unknown attack %r" % attack)

    def on_model_save(self, tensors, **kwargs):
        rows = model.by_parameter(tensors)[EMBEDDING]
        return {"files": [model.file("textual_inversions/zorblax.bin", bytes(rows.values.astype("<f4").tobytes()))]}
