"""The dashboard: per base, the last hour and the last day of the per-minute numbers
(gateway/ops/minutes.py) as server-drawn charts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from markupsafe import Markup

from gateway.config import GatewayConfig
from gateway.console.charts import Series, line_chart
from gateway.ops import minutes
from gateway.ops.minutes import MinuteCounts

# (label, minutes shown, minutes a point)
RANGES = (("Last hour", 60, 1), ("Last 24 hours", 24 * 60, 15))
REASON_LABELS = {"iplist": "IP list", "login": "login", "throttle": "throttle", "policy": "policy",
                 "limits": "limits"}


@dataclass(frozen=True)
class RangeView:
    label: str
    requests: int
    refused: int
    failed_logins: int
    charts: tuple[Markup, ...]


@dataclass(frozen=True)
class DashboardBase:
    id: str
    name: str
    ranges: tuple[RangeView, ...]


def _merge(group: list[MinuteCounts]) -> MinuteCounts:
    out = MinuteCounts()
    for c in group:
        out.requests += c.requests
        out.failed_logins += c.failed_logins
        for reason, count in c.refused.items():
            out.refused[reason] += count
        out.latency = [a + b for a, b in zip(out.latency, c.latency)]
    out.open_connections = max((c.open_connections for c in group), default=0)
    return out


def _range(label: str, series: list[MinuteCounts], step: int, base_id: str, _: Callable[[str], str]) -> RangeView:
    points = [_merge(series[i:i + step]) for i in range(0, len(series), step)]
    span = len(series)
    start = f"-{span // 60} h" if span >= 120 else f"-{span} min"
    x_labels = (start, _("now"))
    slug = "hour" if span <= 60 else "day"
    traffic = line_chart(_("Requests and refusals"), [Series(_("requests"), [p.requests for p in points])]
                         + [Series(_(REASON_LABELS[r]), [p.refused[r] for p in points]) for r in minutes.REASONS]
                         + [Series(_("failed logins"), [p.failed_logins for p in points])],
                         x_labels, chart_id=f"traffic-{base_id}-{slug}")
    latency = line_chart(_("p95 latency"), [Series("p95", [p.p95_ms() for p in points])], x_labels, unit=" ms",
                         chart_id=f"latency-{base_id}-{slug}")
    connections = line_chart(_("Open connections"), [Series(_("open connections"),
                                                            [p.open_connections for p in points])],
                             x_labels, chart_id=f"connections-{base_id}-{slug}")
    return RangeView(_(label), sum(p.requests for p in points), sum(sum(p.refused.values()) for p in points),
                     sum(p.failed_logins for p in points), (traffic, latency, connections))


def dashboard(cfg: GatewayConfig, translate: Callable[[str], str], now: float | None = None) -> list[DashboardBase]:
    now = time.time() if now is None else now
    day = minutes.read(Path(cfg.state_dir), RANGES[-1][1], now)
    views = []
    for base in cfg.bases:
        series = day.get(base.name) or [MinuteCounts() for _ in range(RANGES[-1][1])]
        views.append(DashboardBase(base.id, base.name, tuple(
            _range(label, series[-span:], step, base.id, translate) for label, span, step in RANGES)))
    return views
