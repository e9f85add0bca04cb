"""Custom metrics. Every family name starts with this model's name, so that the two stubs'
families can be told apart on /metrics. CASE picks what to do; RESULT is JSON (values read back
with Metric.value(), or the text of each exception).

Only the cases "delete_families", "recreate" and "orphan" ever delete a MetricFamily: under the
C++ stub that corrupts tritonserver's metric registry (the stub creates each family twice and
deletes one of the two), so the tests run them on a quarantine server, like "parent_errors"
(every error the parent reports: the C++ stub reads the error text after the parent freed it,
and the shared-memory allocator can end up corrupted).
"""
import json

import numpy as np

import triton_python_backend_utils as pb_utils

try:  # MetricKind and Metric are only reachable through c_python_backend_utils
    import c_python_backend_utils as c_utils
except ImportError:  # pragma: no cover
    c_utils = pb_utils


def text_of(call):
    try:
        result = call()
        return "returned " + (repr(result) if not isinstance(result, c_utils.Metric) else "a Metric")
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__ + ": " + str(exc)


class TritonPythonModel:
    def initialize(self, args):
        self.prefix = args["model_name"]
        self.kept = {}
        self.forever = []  # never deleted

    def family(self, suffix, kind, description="help text"):
        return pb_utils.MetricFamily(name=self.prefix + "_" + suffix, description=description, kind=kind)

    def execute(self, requests):
        responses = []
        for request in requests:
            case = pb_utils.get_input_tensor_by_name(request, "CASE").as_numpy()[0].decode()
            if case.startswith("error:"):
                result = text_of(self.error_attempts()[case[len("error:"):]])
            else:
                result = getattr(self, "case_" + case)()
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("RESULT", np.array([json.dumps(result).encode()], dtype=object))]))
        return responses

    def case_create(self):
        counter = self.family("requests_total", pb_utils.MetricFamily.COUNTER, "requests seen")
        gauge = self.family("temperature", pb_utils.MetricFamily.GAUGE, "a gauge with \"quotes\" and \\ ✓")
        histogram = self.family("latency", pb_utils.MetricFamily.HISTOGRAM, "a histogram")
        a = counter.Metric(labels={"route": "a", "zone": "eu"})
        b = counter.Metric(labels={"route": "b"})
        unlabelled = counter.Metric()
        g = gauge.Metric(labels={"sensor": "x"})
        h = histogram.Metric(labels={"route": "a"}, buckets=[0.1, 1.0, 10.0])
        a.increment(2)
        a.increment(3.5)
        b.increment(1)
        unlabelled.increment(0)
        g.set(21.5)
        g.increment(-1.5)
        for value in (0.05, 5, 50, 1.0):
            h.observe(value)
        self.kept.update(counter=counter, gauge=gauge, histogram=histogram, a=a, b=b, unlabelled=unlabelled,
                         g=g, h=h)
        return {"a": a.value(), "b": b.value(), "unlabelled": unlabelled.value(), "g": g.value()}

    def case_update(self):
        self.kept["a"].increment(10)
        self.kept["g"].set(-3)
        self.kept["h"].observe(0.5)
        return {"a": self.kept["a"].value(), "g": self.kept["g"].value()}

    def case_delete_metric(self):
        del self.kept["b"]
        return "deleted"

    def case_recreate(self):
        """The families again, with the names of deleted ones."""
        return self.case_create()

    def case_delete_families(self):
        """Metrics first, then their families (the documented order)."""
        for key in ("a", "unlabelled", "g", "h", "counter", "gauge", "histogram"):
            self.kept.pop(key, None)
        return sorted(self.kept)

    def case_same_labels_twice(self):
        family = self.family("shared", pb_utils.MetricFamily.GAUGE)
        first = family.Metric(labels={"k": "v"})
        second = family.Metric(labels={"k": "v"})
        first.set(7)
        self.kept.update(shared=family, first=first, second=second)
        return {"second sees": second.value()}

    def error_attempts(self):
        counter = self.family("errors_total", pb_utils.MetricFamily.COUNTER)
        gauge = self.family("errors_gauge", pb_utils.MetricFamily.GAUGE)
        histogram = self.family("errors_hist", pb_utils.MetricFamily.HISTOGRAM)
        metric = counter.Metric(labels={"k": "v"})
        g = gauge.Metric()
        h = histogram.Metric(buckets=[1.0, 2.0])
        attempts = {
            "labels not a dict": lambda: counter.Metric(labels=["k", "v"]),
            "buckets not a list": lambda: histogram.Metric(buckets=(1.0, 2.0)),
            "buckets for a counter": lambda: counter.Metric(buckets=[1.0]),
            "buckets for a gauge": lambda: gauge.Metric(buckets=[1.0]),
            "histogram without buckets": lambda: histogram.Metric(),
            "bucket not a number": lambda: histogram.Metric(labels={"u": "2"}, buckets=["a"]),
            "kind not a MetricKind": lambda: pb_utils.MetricFamily(self.prefix + "_bad_kind", "d", 0),
            "increment by a string": lambda: g.increment("1"),
            "Metric() constructed directly": lambda: c_utils.Metric(),
        }
        self.forever += [counter, metric, gauge, g, histogram, h]
        return attempts

    def case_errors(self):
        return {label: text_of(call) for label, call in self.error_attempts().items()}

    def case_parent_errors(self):
        """Everything the parent refuses: metrics and families it cannot create, operations a kind
        does not support. The C++ stub reads the parent's error text after letting the parent free
        it (a race on the shared-memory allocator): tritonserver can abort then or later."""
        counter = self.family("refused_total", pb_utils.MetricFamily.COUNTER)
        gauge = self.family("refused_gauge", pb_utils.MetricFamily.GAUGE)
        histogram = self.family("refused_hist", pb_utils.MetricFamily.HISTOGRAM)
        metric = counter.Metric(labels={"k": "v"})
        g = gauge.Metric()
        h = histogram.Metric(buckets=[1.0, 2.0])
        self.forever += [counter, gauge, histogram, metric, g, h]
        return {
            "negative counter increment": text_of(lambda: metric.increment(-1)),
            "set on a counter": text_of(lambda: metric.set(3)),
            "observe on a counter": text_of(lambda: metric.observe(3)),
            "observe on a gauge": text_of(lambda: g.observe(1)),
            "set on a histogram": text_of(lambda: h.set(1)),
            "increment on a histogram": text_of(lambda: h.increment(1)),
            "value of a histogram": text_of(h.value),
            "label value not a string": text_of(lambda: counter.Metric(labels={"k": 1})),
            "unsorted buckets": text_of(lambda: histogram.Metric(buckets=[2.0, 1.0])),
            "same name, other kind": text_of(lambda: self.family("refused_total", pb_utils.MetricFamily.GAUGE)),
            "same name, same kind": text_of(lambda: self.forever.append(
                self.family("refused_total", pb_utils.MetricFamily.COUNTER))),
            "empty name": text_of(lambda: pb_utils.MetricFamily("", "d", pb_utils.MetricFamily.COUNTER)),
            "then a valid metric": text_of(lambda: self.forever.append(counter.Metric(labels={"k": "1"}))),
        }

    def case_orphan(self):
        """A metric whose family was deleted first (the documented misuse)."""
        family = self.family("orphaned", pb_utils.MetricFamily.GAUGE)
        orphan = family.Metric()
        del family
        result = {"set": text_of(lambda: orphan.set(1)), "value": text_of(orphan.value)}
        self.kept["orphan"] = orphan
        return result

    def case_drop_orphan(self):
        del self.kept["orphan"]
        return "dropped"
