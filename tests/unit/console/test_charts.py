"""The dashboard's charts: server-drawn SVG that parses, scales and escapes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gateway.console.charts import Series, line_chart

SVG = "{http://www.w3.org/2000/svg}"


def test_a_chart_is_valid_svg_with_a_line_per_series_scaled_to_a_round_maximum() -> None:
    svg = line_chart("Requests", [Series("requests", [0, 5, 37, 2]), Series("refused", [0, 0, 1, 0])],
                     ("-60 min", "now"), chart_id="traffic-b1-hour")
    root = ET.fromstring(str(svg))
    assert root.get("id") == "traffic-b1-hour" and root.get("aria-label") == "Requests"
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2
    ys = [float(p.split(",")[1]) for p in lines[0].get("points", "").split()]
    assert min(ys) > 8  # 37 is below the top: the axis goes to 50
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "50" in texts and "25" in texts and "requests (44)" in texts and "now" in texts


def test_the_chart_changes_with_the_numbers() -> None:
    quiet = line_chart("R", [Series("r", [0, 0, 0])], ("a", "b"))
    busy = line_chart("R", [Series("r", [0, 4, 0])], ("a", "b"))
    assert str(quiet) != str(busy)


def test_gaps_and_labels() -> None:
    svg = str(line_chart("p95 <latency>", [Series("p95", [None, 10, None, 20, 30])], ("a", "b"), unit=" ms"))
    root = ET.fromstring(svg)
    assert len(root.findall(f"{SVG}circle")) == 1 and len(root.findall(f"{SVG}polyline")) == 1
    assert "<latency>" not in svg and "&lt;latency&gt;" in svg
