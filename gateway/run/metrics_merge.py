"""One /metrics for the machine from the /metrics of every worker process.

Counters and histograms are summed over the workers (the machine served that many requests);
gauges that describe one process (open connections) are kept per worker with a ``worker``
label, and ``gateway_worker_requests_total{worker}`` shows how the kernel spread the requests; gauges read from shared files or the shared store (certificate expiry, IP list sizes,
active bans) are the same in every worker, so the first worker's value is taken.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

# Gauges with one value per worker process.
PER_WORKER = frozenset({"gateway_open_connections", "gateway_store_up"})


class _Merged(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def merge(expositions: Iterable[tuple[str, str]], extra: Iterable[Metric] = ()) -> bytes:
    """``expositions``: (worker label, Prometheus text) per worker. Returns the merged text."""
    order: list[str] = []
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    per_worker_requests: dict[str, float] = {}
    for worker, text in expositions:
        for family in text_string_to_metric_families(text):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
                order.append(family.name)
            merged = values[family.name]
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue  # a per-process start time; meaningless summed
                labels = dict(sample.labels)
                if family.name in PER_WORKER:
                    labels["worker"] = worker
                key = (sample.name, tuple(sorted(labels.items())))
                if sample.name == "gateway_requests_total":
                    per_worker_requests[worker] = per_worker_requests.get(worker, 0.0) + sample.value
                if family.type in ("counter", "histogram", "summary") or family.name in PER_WORKER:
                    merged[key] = merged.get(key, 0.0) + sample.value
                else:
                    merged.setdefault(key, sample.value)
    result = []
    if per_worker_requests:
        total = Metric("gateway_worker_requests", "Requests answered by each worker process", "counter")
        for worker, value in per_worker_requests.items():
            total.add_sample("gateway_worker_requests_total", {"worker": worker}, value)
        result.append(total)
    for name in order:
        family = families[name]
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
        result.append(family)
    registry = CollectorRegistry()
    registry.register(_Merged(result + list(extra)))
    return generate_latest(registry)
