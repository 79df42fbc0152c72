"""The read size of a client connection (gateway/traffic/readsizes.py)."""

from __future__ import annotations

import pytest

from gateway.traffic.readsizes import READ_SIZES, ReadSizes


@pytest.mark.parametrize(("bodies", "size", "limit"), [
    (0, 8 * 1024, 1024),
    (1, 256 * 1024, 64 * 1024),  # asyncio's own, as before: allowed uploads cost what they did
    (100, 256 * 1024, 64 * 1024),
])
def test_a_connection_reads_little_until_a_body_is_allowed(bodies: int, size: int, limit: int) -> None:
    assert (READ_SIZES.size(bodies), READ_SIZES.limit(bodies)) == (size, limit)


def test_the_defaults_keep_a_stalled_upload_s_reads_far_below_asyncio_s() -> None:
    # asyncio: 256 KiB per recv and up to 2 × 64 KiB held by the StreamReader. What one undecided
    # connection can have read and not handed on is one read and twice the limit.
    held = READ_SIZES.undecided + 2 * READ_SIZES.reader_limit
    assert held <= 16 * 1024 < 256 * 1024 + 2 * 64 * 1024


@pytest.mark.parametrize("sizes", [
    {"undecided": 0}, {"reader_limit": 0}, {"undecided": 512 * 1024},  # above body
    {"reader_limit": 16 * 1024},  # above undecided
    {"body_reader_limit": 512},  # below reader_limit
    {"body_reader_limit": 512 * 1024},  # above body
])
def test_sizes_out_of_order_are_refused(sizes: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ReadSizes(**sizes)
