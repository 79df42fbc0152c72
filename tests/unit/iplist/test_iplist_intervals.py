"""The compiled interval structure against a brute-force ``ipaddress`` check."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.iplist.intervals import IntervalSet
from gateway.iplist.lists import compile_text
from gateway.iplist.parse import V4, V6, pack


def build(family: int, spans: list[tuple[int, int, int]]) -> IntervalSet:
    return IntervalSet.build([pack(family, *span) for span in spans], 32 if family == V4 else 128)


def test_empty_set_finds_nothing() -> None:
    assert build(V4, []).find(0) is None
    assert len(build(V4, [])) == 0


def test_edges_of_an_interval() -> None:
    found = build(V4, [(10, 20, 7)])
    assert [found.find(x) for x in (9, 10, 15, 20, 21)] == [None, 7, 7, 7, None]


def test_overlaps_are_cut_and_each_piece_names_a_covering_line() -> None:
    found = build(V4, [(10, 20, 1), (15, 30, 2), (40, 50, 3), (41, 42, 4), (51, 60, 5)])
    assert list(found) == [(10, 20, 1), (21, 30, 2), (40, 50, 3), (51, 60, 5)]


def test_same_start_wider_span_takes_over() -> None:
    assert list(build(V4, [(10, 12, 1), (10, 20, 2)])) == [(10, 20, 2)]


def test_duplicates_name_the_earliest_line() -> None:
    assert list(build(V4, [(5, 5, 9), (5, 5, 3)])) == [(5, 5, 3)]


def test_full_ranges_at_the_top_of_each_family() -> None:
    top4, top6 = 2**32 - 1, 2**128 - 1
    assert build(V4, [(top4, top4, 1)]).find(top4) == 1
    assert build(V6, [(0, top6, 1)]).find(top6) == 1


# --- property: the structure answers exactly like a brute-force scan ---------------------------

v4_addresses = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def v4_entry(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["single", "mask", "range"]))
    address = draw(v4_addresses)
    text = str(ipaddress.IPv4Address(address))
    if kind == "single":
        return text
    if kind == "mask":
        return f"{text}/{draw(st.integers(min_value=0, max_value=32))}"
    other = draw(v4_addresses)
    low, high = sorted((address, other))
    return f"{ipaddress.IPv4Address(low)} - {ipaddress.IPv4Address(high)}"


@st.composite
def v6_entry(draw: st.DrawFn) -> str:
    address = draw(st.integers(min_value=0, max_value=2**128 - 1))
    text = str(ipaddress.IPv6Address(address))
    if draw(st.booleans()):
        return f"{text}/{draw(st.integers(min_value=0, max_value=128))}"
    return text


def brute_force(lines: list[str], address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> set[int]:
    """Line numbers of every entry containing the address, by ipaddress alone."""
    hits = set()
    for number, line in enumerate(lines, 1):
        if "-" in line:
            low, high = (ipaddress.ip_address(p.strip()) for p in line.split("-"))
            if low.version == address.version and low <= address <= high:  # type: ignore[operator]
                hits.add(number)
        else:
            network = ipaddress.ip_network(line, strict=False)
            if network.version == address.version and address in network:
                hits.add(number)
    return hits


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(v4_entry(), min_size=0, max_size=25), probes=st.lists(v4_addresses, max_size=20),
       pick=st.lists(st.integers(min_value=0, max_value=10**6), max_size=10))
def test_ipv4_lookup_matches_brute_force(lines: list[str], probes: list[int], pick: list[int]) -> None:
    compiled = compile_text("\n".join(lines), Path("list.dat"))
    assert not compiled.errors and compiled.entries == len(lines)
    # Probe the edges of every entry too, where off-by-one mistakes live.
    edges: list[int] = []
    for start, end, _ in compiled.v4:
        edges += [start, end, max(start - 1, 0), min(end + 1, 2**32 - 1)]
    for value in probes + edges + [p % 2**32 for p in pick]:
        expected = brute_force(lines, ipaddress.IPv4Address(value))
        line = compiled.find(V4, value)
        if expected:
            assert line in expected, (value, lines)
        else:
            assert line is None, (value, lines)


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(v6_entry(), max_size=15), probes=st.lists(st.integers(min_value=0, max_value=2**128 - 1), max_size=10))
def test_ipv6_lookup_matches_brute_force(lines: list[str], probes: list[int]) -> None:
    compiled = compile_text("\n".join(lines), Path("list.dat"))
    assert not compiled.errors
    edges: list[int] = []
    for start, end, _ in compiled.v6:
        edges += [start, end, max(start - 1, 0), min(end + 1, 2**128 - 1)]
    for value in probes + edges:
        expected = brute_force(lines, ipaddress.IPv6Address(value))
        line = compiled.find(V6, value)
        assert (line in expected) if expected else (line is None), (value, lines)


@settings(max_examples=200, deadline=None)
@given(spans=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40)), max_size=30))
def test_pieces_are_sorted_disjoint_and_covered_by_their_line(spans: list[tuple[int, int]]) -> None:
    raw = [(start, start + length, number) for number, (start, length) in enumerate(spans, 1)]
    pieces = list(build(V4, raw))
    by_line = {number: (start, end) for start, end, number in raw}
    for (s1, e1, _), (s2, _, _) in zip(pieces, pieces[1:]):
        assert e1 < s2
    for start, end, line in pieces:
        assert by_line[line][0] <= start <= end <= by_line[line][1]
    covered = {x for start, end, _ in raw for x in range(start, end + 1)}
    assert covered == {x for start, end, _ in pieces for x in range(start, end + 1)}
