"""Custom metrics as the server keeps them (core metric_family.cc over prometheus-cpp), for the
harness: families and metrics created by ``pb_utils.MetricFamily`` / ``.Metric``, their values,
and the Prometheus text a ``/metrics`` scrape shows.

A family is identified by name: creating it again with the same kind shares it (the C++ stub
creates every family twice); another kind is prometheus-cpp's error. A metric is a label set in
its family; the same labels give the same metric. Addresses are the opaque ids the stub keeps.
"""
from __future__ import annotations

import itertools
import json
import math
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

COUNTER, GAUGE, HISTOGRAM = 0, 1, 2
_KIND_NAMES = {COUNTER: "counter", GAUGE: "gauge", HISTOGRAM: "histogram"}
_KIND_ENUM = {COUNTER: "COUNTER", GAUGE: "GAUGE", HISTOGRAM: "HISTOGRAM"}
_ADDRESSES = itertools.count(0x7000_0000, 0x10)


class MetricError(Exception):
    """Text the parent gives back to the stub (which adds its own prefix)."""


@dataclass
class Metric:
    family: "Family"
    labels: Dict[str, str]
    buckets: Optional[List[float]] = None
    value: float = 0.0
    counts: List[int] = field(default_factory=list)
    total: float = 0.0
    observations: int = 0
    refs: int = 0


@dataclass
class Family:
    name: str
    description: str
    kind: int
    metrics: Dict[Tuple[Tuple[str, str], ...], Metric] = field(default_factory=dict)
    refs: int = 0


class MetricRegistry:
    """The server's registry of custom metric families (shared by every model)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.families: Dict[str, Family] = {}
        self._family_at: Dict[int, Family] = {}
        self._metric_at: Dict[int, Metric] = {}

    # ---------------------------------------------------------------- families
    def family_new(self, name: str, description: str, kind: int) -> int:
        if kind not in _KIND_NAMES:
            raise MetricError("Unsupported kind passed to MetricFamily constructor.")
        with self._lock:
            fam = self.families.get(name)
            if fam is None:
                fam = self.families[name] = Family(name, description, kind)
            elif fam.kind != kind:
                raise MetricError("Family name already exists with different type")
            fam.refs += 1
            address = next(_ADDRESSES)
            self._family_at[address] = fam
            return address

    def family_delete(self, address: int) -> None:
        with self._lock:
            fam = self._family_at.pop(address, None)
            if fam is None:
                return
            fam.refs -= 1
            if fam.refs <= 0 and not fam.metrics:
                self.families.pop(fam.name, None)

    # ---------------------------------------------------------------- metrics
    def metric_new(self, family_address: int, labels_json: str,
                   buckets: Optional[List[float]]) -> int:
        with self._lock:
            fam = self._family_at.get(family_address)
            if fam is None:
                raise MetricError("Could not find the MetricFamily of this Metric.")
            if fam.kind == HISTOGRAM and buckets is None:
                raise MetricError("Bucket boundaries not found in Metric args.")
            if fam.kind != HISTOGRAM and buckets is not None:
                raise MetricError("Unexpected args found in "
                                  f"{_KIND_NAMES[fam.kind]} Metric constructor.")
            labels = {str(k): str(v) for k, v in (json.loads(labels_json or "{}") or {}).items()}
            key = tuple(sorted(labels.items()))
            metric = fam.metrics.get(key)
            if metric is None:
                metric = fam.metrics[key] = Metric(fam, labels, list(buckets) if buckets else None)
                if buckets is not None:
                    metric.counts = [0] * (len(buckets) + 1)
            metric.refs += 1
            address = next(_ADDRESSES)
            self._metric_at[address] = metric
            return address

    def metric_delete(self, address: int) -> None:
        with self._lock:
            metric = self._metric_at.pop(address, None)
            if metric is None:
                return
            metric.refs -= 1
            if metric.refs <= 0:
                fam = metric.family
                fam.metrics.pop(tuple(sorted(metric.labels.items())), None)
                if fam.refs <= 0 and not fam.metrics:
                    self.families.pop(fam.name, None)

    def _metric(self, address: int, what: str) -> Metric:
        metric = self._metric_at.get(address)
        if metric is None:
            raise MetricError(f"Could not {what}. Metric has been invalidated.")
        return metric

    def value(self, address: int) -> float:
        with self._lock:
            m = self._metric(address, "get metric value")
            if m.family.kind == HISTOGRAM:
                raise MetricError("TRITONSERVER_METRIC_KIND_HISTOGRAM does not support Value")
            return m.value

    def increment(self, address: int, value: float) -> None:
        with self._lock:
            m = self._metric(address, "increment metric value")
            kind = m.family.kind
            if kind == HISTOGRAM:
                raise MetricError("TRITONSERVER_METRIC_KIND_HISTOGRAM does not support Increment")
            if kind == COUNTER and value < 0.0:
                raise MetricError("TRITONSERVER_METRIC_KIND_COUNTER can only be incremented "
                                  "monotonically by non-negative values.")
            m.value += value

    def set(self, address: int, value: float) -> None:
        with self._lock:
            m = self._metric(address, "set metric value")
            if m.family.kind != GAUGE:
                raise MetricError(f"TRITONSERVER_METRIC_KIND_{_KIND_ENUM[m.family.kind]} "
                                  "does not support Set")
            m.value = value

    def observe(self, address: int, value: float) -> None:
        with self._lock:
            m = self._metric(address, "set metric value")
            if m.family.kind != HISTOGRAM:
                raise MetricError(f"TRITONSERVER_METRIC_KIND_{_KIND_ENUM[m.family.kind]} "
                                  "does not support Observe")
            i = 0
            while i < len(m.buckets) and value > m.buckets[i]:
                i += 1
            m.counts[i] += 1
            m.total += value
            m.observations += 1

    # ---------------------------------------------------------------- Prometheus text
    def prometheus_text(self) -> str:
        """The families in Prometheus' text exposition format (as prometheus-cpp writes it)."""
        out: List[str] = []
        with self._lock:
            # prometheus-cpp's Registry keeps a list per kind and collects counters, then
            # gauges, then histograms, each in creation order
            for fam in sorted(self.families.values(), key=lambda f: f.kind):
                if not fam.metrics:
                    continue
                out.append(f"# HELP {fam.name} {fam.description}")
                out.append(f"# TYPE {fam.name} {_KIND_NAMES[fam.kind]}")
                for m in fam.metrics.values():
                    if fam.kind == HISTOGRAM:
                        # prometheus-cpp's text serializer: count, sum, then the buckets
                        out.append(f"{fam.name}_count{_labels(m.labels)} {m.observations}")
                        out.append(f"{fam.name}_sum{_labels(m.labels)} {_num(m.total)}")
                        running = 0
                        for bound, count in zip(m.buckets + [math.inf], m.counts):
                            running += count
                            le = "+Inf" if bound == math.inf else _num(bound)
                            out.append(f"{fam.name}_bucket{_labels(m.labels, le=le)} {running}")
                    else:
                        out.append(f"{fam.name}{_labels(m.labels)} {_num(m.value)}")
        return "\n".join(out) + ("\n" if out else "")


def _num(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _labels(labels: Dict[str, str], **extra: str) -> str:
    items = list(labels.items()) + list(extra.items())
    if not items:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + body + "}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
