"""Model access for Python plugins (docs/protocol.md, section 9): the tensors on_model_step and
on_model_save carry, and the replies that add tokens, write rows or return files.

    from bulkhead_plugin import model

    def on_model_step(self, global_step, tensors, **kwargs):
        rows = model.by_parameter(tensors)["caption.words.weight"]    # (row numbers, values)
        return model.updates(model.update("caption.words.weight", rows.rows, rows.values * 0.99, global_step))

Values are numpy arrays when numpy is there, else lists of floats (row-major, float32 on the wire).
Tensors may arrive in the plugin's shared-memory region (section 9.4) instead of inline: reading
is the same. ``update(..., region=True)`` writes the values into the slot lent with the request
being answered, instead of into the message.
"""
import array
import collections
import os
import sys

from .region import Region

try:
    import numpy
except ImportError:  # the SDK itself needs only the standard library
    numpy = None

Rows = collections.namedtuple("Rows", "rows values")


REGION = None


def attach_region(environ=os.environ):
    """Maps the region named by BULKHEAD_MODEL_REGION, if any (the host does this at start)."""
    global REGION
    spec = environ.get("BULKHEAD_MODEL_REGION")
    if spec and REGION is None:
        fd, slots, slot_bytes = (int(x) for x in spec.split())
        REGION = Region(fd, slots, slot_bytes)  # BULKHEAD_MODEL_REGION: "fd slots slot_bytes"
    return REGION


def begin_request(params):
    """Notes the slot this request lends (the host calls it before each model hook)."""
    if REGION is None:
        return
    REGION.lent, REGION.cursor = None, 0
    for t in (params or {}).get("tensors", []) or []:
        slot = t.get("tensor", {}).get("slot")
        if slot is not None:
            REGION.lent = slot["index"]
            return


def tensor_values(tensor):
    """A wire tensor ({dtype, shape, data} or {dtype, shape, slot}) as a numpy array of its shape,
    or a flat list of floats. Values in the region are copied out."""
    if tensor.get("dtype") != "float32":
        raise ValueError("only float32 tensors are sent, not %r" % (tensor.get("dtype"),))
    data = tensor["data"] if "data" in tensor else REGION.read(tensor["slot"])
    if numpy is not None:
        return numpy.frombuffer(data, dtype="<f4").reshape(tensor["shape"]).copy()
    values = array.array("f")
    values.frombytes(bytes(data))
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


def by_parameter(tensors):
    """on_model_step / on_model_save's tensors as {parameter: Rows(rows, values)}."""
    return {t["parameter"]: Rows(list(t["rows"]), tensor_values(t["tensor"])) for t in tensors}


def _tensor(values, rows):
    if numpy is not None:
        a = numpy.asarray(values, dtype="<f4")
        if a.ndim == 1:
            a = a.reshape(len(rows), -1)
        return {"dtype": "float32", "shape": list(a.shape), "data": a.tobytes()}
    flat = [float(v) for v in values]
    packed = array.array("f", flat)
    if sys.byteorder != "little":
        packed.byteswap()
    return {"dtype": "float32", "shape": [len(rows), len(flat) // max(1, len(rows))], "data": packed.tobytes()}


def update(parameter, rows, values, based_on_step, mode="replace", region=False):
    """One write request: replace (or, with mode="add", add to) the rows with values (len(rows) x row size).
    region=True: the values go into the region slot lent with this request, not into the message."""
    if mode not in ("replace", "add"):
        raise ValueError("mode must be replace or add, not %r" % (mode,))
    rows = [int(r) for r in rows]
    tensor = _tensor(values, rows)
    if region:
        if REGION is None:
            raise RuntimeError("this plugin has no shared region (it needs a model_access grant)")
        tensor = {"dtype": tensor["dtype"], "shape": tensor["shape"], "slot": REGION.write(tensor["data"])}
    return {"parameter": parameter, "rows": rows, "mode": mode, "based_on_step": int(based_on_step), "tensor": tensor}


def updates(*items):
    """A reply carrying write requests: the trainer applies all of them at its next step boundary, or none."""
    return {"updates": list(items)}


def file(name, data):
    """A file for on_model_save's reply, written beside the checkpoint (relative name, bytes)."""
    return {"name": str(name), "data": bytes(data)}
