"""addons.metrics keeps the labelled children it counts into: the same counts as labels() every time."""

from __future__ import annotations

from mitmproxy.test import tflow

from addons import metrics as metrics_addon
from addons.accesslog import ENTRY_KEY
from addons.metrics import Metrics


def _count(m: Metrics, base: str, status: int, verdict: str, ms: float = 5.0) -> None:
    flow = tflow.tflow(resp=True)
    flow.metadata[ENTRY_KEY] = {"base": base, "status": status, "verdict": verdict, "duration_ms": ms}
    m.response(flow)


def _value(m: Metrics, name: str, **labels: str) -> float:
    value = m.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_cached_children_count_as_labels_does(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(metrics_addon, "CHILDREN_CACHED", 3)  # forces the cache to be dropped and refilled
    m = Metrics(lookup=lambda name: None)
    plan = [("A", 200, "allowed"), ("A", 200, "allowed"), ("B", 403, "denied-policy"), ("A", 502, "backend-error"),
            ("C", 200, "allowed"), ("A", 200, "allowed"), ("B", 403, "denied-policy"), ("D", 401, "denied-auth")]
    for base, status, verdict in plan:
        _count(m, base, status, verdict)
    for base, status, verdict in set(plan):
        expected = plan.count((base, status, verdict))
        assert _value(m, "gateway_requests_total", base=base, status=str(status), verdict=verdict) == expected
    for base in "ABCD":
        assert _value(m, "gateway_request_duration_seconds_count", base=base) == sum(1 for p in plan if p[0] == base)
    assert len(m._request_children) <= 3 and len(m._latency_children) <= 3
