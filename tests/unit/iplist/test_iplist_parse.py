"""Lines of whitelist.dat / blacklist.dat → spans, or errors naming the line and the fix."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.iplist.parse import V4, V6, EntryError, parse_address, parse_entry, parse_text


def v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def v6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


# --- the seed's page, line by line ------------------------------------------------------------

def test_seed_single_addresses() -> None:
    parsed = parse_text("192.168.1.1\n192.168.1.2\n192.168.1.3\n")
    assert parsed.spans(V4) == [(v4("192.168.1.1"), v4("192.168.1.1"), 1), (v4("192.168.1.2"), v4("192.168.1.2"), 2),
                                (v4("192.168.1.3"), v4("192.168.1.3"), 3)]
    assert parsed.entries == 3 and not parsed.errors


def test_seed_mask_covers_the_whole_16_bit_network() -> None:
    assert parse_entry("192.198.0.0/16") == (V4, v4("192.198.0.0"), v4("192.198.255.255"))


def test_seed_range_covers_1_to_100() -> None:
    assert parse_entry("192.198.0.1-192.198.0.100") == (V4, v4("192.198.0.1"), v4("192.198.0.100"))


def test_seed_example_files_parse_without_errors() -> None:
    for text in ("192.168.1.1\n192.168.1.2\n192.198.0.0/16\n", "192.168.1.1\n192.168.1.2\n192.198.0.1-192.198.0.100\n"):
        parsed = parse_text(text)
        assert parsed.entries == 3 and not parsed.errors


# --- masks -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "first", "last"), [
    ("10.0.0.0/8", "10.0.0.0", "10.255.255.255"),
    ("10.1.2.3/24", "10.1.2.0", "10.1.2.255"),          # host bits set: its network
    ("10.1.2.3/32", "10.1.2.3", "10.1.2.3"),
    ("10.1.2.3/31", "10.1.2.2", "10.1.2.3"),
    ("0.0.0.0/0", "0.0.0.0", "255.255.255.255"),
    ("255.255.255.255/1", "128.0.0.0", "255.255.255.255"),
    ("10.1.2.3 / 24", "10.1.2.0", "10.1.2.255"),
    ("10.1.0.0/255.255.0.0", "10.1.0.0", "10.1.255.255"),  # dotted mask, as Windows dialogs show it
])
def test_ipv4_masks(line: str, first: str, last: str) -> None:
    assert parse_entry(line) == (V4, v4(first), v4(last))


@pytest.mark.parametrize(("line", "first", "last"), [
    ("2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
    ("2001:db8::1/64", "2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"),
    ("::1/128", "::1", "::1"),
    ("::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    ("fe80::1%eth0/64", "fe80::", "fe80::ffff:ffff:ffff:ffff"),
])
def test_ipv6_masks(line: str, first: str, last: str) -> None:
    assert parse_entry(line) == (V6, v6(first), v6(last))


# --- ranges and single addresses ----------------------------------------------------------------

@pytest.mark.parametrize("line", ["10.0.0.1-10.0.0.9", "10.0.0.1 - 10.0.0.9", "10.0.0.1\t-\t10.0.0.9", "10.0.0.1 -10.0.0.9"])
def test_range_spacing(line: str) -> None:
    assert parse_entry(line) == (V4, v4("10.0.0.1"), v4("10.0.0.9"))


def test_single_address_range_and_ipv6_range() -> None:
    assert parse_entry("10.0.0.1-10.0.0.1") == (V4, v4("10.0.0.1"), v4("10.0.0.1"))
    assert parse_entry("2001:db8::1-2001:db8::ff") == (V6, v6("2001:db8::1"), v6("2001:db8::ff"))


@pytest.mark.parametrize("line", ["::1", "2001:DB8::A", "2001:0db8:0000:0000:0000:0000:0000:0001", "::ffff:10.1.2.3",
                                  "fe80::1%eth0", "fe80::1%12"])
def test_ipv6_single_forms(line: str) -> None:
    family, value = parse_address(line)
    assert family == V6 and value == v6(line.partition("%")[0])


def test_mapped_ipv6_entry_also_covers_the_ipv4_address() -> None:
    parsed = parse_text("::ffff:10.1.2.3\n::ffff:0:0/96\n")
    assert (v4("10.1.2.3"), v4("10.1.2.3"), 1) in parsed.spans(V4)
    assert (0, 2**32 - 1, 2) in parsed.spans(V4)
    assert parsed.entries == 2


# --- layout: comments, blanks, Notepad leftovers ------------------------------------------------

def test_comments_blanks_and_stray_whitespace() -> None:
    text = ("# office\r\n; old style comment\r\n\r\n   \t\r\n  192.168.1.1  \r\n\t10.0.0.0/8\t# HQ\r\n"
            "10.1.1.1 ; printer\r\n\ufeff172.16.0.1\u00a0\r\n")
    parsed = parse_text(text)
    assert not parsed.errors
    assert [line for _, _, line in parsed.spans(V4)] == [5, 6, 7, 8]


# --- bad lines ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "words"), [
    ("192.168.1.256", "256"),
    ("192.168.1", "4 octets"),
    ("192.168.1.*", "192.168.1.0/24"),
    ("192.168.1.1 192.168.1.2", "one entry per line"),
    ("192.168.1.1,192.168.1.2", "one entry per line"),
    ("server01.local", "name, not an address"),
    ("localhost", "name, not an address"),
    ("192.168.001.001", "leading zeros"),
    ("10.0.0.0/33", "longer than the 32 bits"),
    ("2001:db8::/129", "longer than the 128 bits"),
    ("10.0.0.0/abc", "not a mask"),
    ("10.0.0.0/255.0.255.0", "not a contiguous"),
    ("2001:db8::/ffff::", "not a mask length"),
    ("10.0.0.9-10.0.0.1", "runs backwards"),
    ("10.0.0.1-::1", "must be IPv4, or both IPv6"),
    ("10.0.0.1-", "both sides"),
    ("10.0.0.1-10.0.0.5-10.0.0.9", "exactly one"),
    ("10.0.0.0/24-10.0.1.0/24", "cannot contain a mask"),
    ("2001:db8::g", "not an IP address"),
    ("1:2:3:4:5:6:7:8:9", "not an IP address"),
    ("\ufffd\ufffd.1.1.1", "not UTF-8"),
])
def test_bad_lines_are_explained(line: str, words: str) -> None:
    with pytest.raises(EntryError) as caught:
        parse_entry(line)
    assert words in str(caught.value)


def test_bad_line_does_not_disable_the_rest() -> None:
    parsed = parse_text("10.0.0.1\n10.0.0.300\n10.0.0.3\nbogus\n")
    assert parsed.entries == 2
    assert [(e.line, e.text) for e in parsed.errors] == [(2, "10.0.0.300"), (4, "bogus")]
    assert [line for _, _, line in parsed.spans(V4)] == [1, 3]
    assert "line 2" in str(parsed.errors[0])


def test_line_numbers_follow_notepad_line_ends_only() -> None:
    parsed = parse_text("10.0.0.1\r\n10.0.0.2\x0c\r10.0.0.3\nbad\r\n")
    assert [line for _, _, line in parsed.spans(V4)] == [1, 2, 3]
    assert [e.line for e in parsed.errors] == [4]


def test_leading_zeros_refused_even_where_inet_pton_accepts_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import gateway.iplist.parse as parse

    def permissive(family: int, text: str) -> bytes:  # like inet_aton: "010" is octal 8
        return socket.inet_aton(text) if family == socket.AF_INET else socket.inet_pton(family, text)

    monkeypatch.setattr(parse, "_pton", permissive)
    monkeypatch.setattr(parse, "_CHECK_LEADING_ZEROS", True)
    parsed = parse_text("010.1.1.1\n10.1.1.1\n")
    assert [e.line for e in parsed.errors] == [1] and "leading zeros" in parsed.errors[0].reason
    assert parsed.spans(V4) == [(v4("10.1.1.1"), v4("10.1.1.1"), 2)]


def test_a_host_name_with_a_dash_is_reported_whole() -> None:
    with pytest.raises(EntryError) as info:
        parse_entry("склад-пк")
    assert "'склад-пк'" in str(info.value) and "name" in str(info.value)
