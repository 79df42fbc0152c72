"""How much the gateway reads from a client's socket at a time (issue 24 point 1).

Each read brings its size into the process before anything has looked at it. asyncio reads up to
256 KiB a time and its StreamReader holds up to twice its limit (64 KiB by default) before it
stops reading; mitmproxy then takes 64 KiB pieces. A client that announces a large body and
stalls pins all of that per connection while the gateway is still deciding on the head — and
200 such connections added ~100 MiB that the allocator kept after they left.

So a client connection reads little while no request of it has a body the gateway accepted
(the head is being decided, or was refused and the connection is lingering), and as asyncio
does once a body is allowed and streams on to the back end, where the read size is throughput.

The addon side (addons/_reads.py) applies these numbers to mitmproxy's sockets.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadSizes:
    """Bytes per socket read, by what the connection is doing, and the StreamReader's limit."""

    # A TLS record is at most 16 KiB; OpenSSL keeps a partial one, so reads below it cost nothing
    # in correctness, only in calls. 8 KiB is a few small heads or one piece of a body.
    undecided: int = 8 * 1024
    # asyncio's own sizes once a body is allowed: an allowed upload costs what it cost before.
    # Measured on a 1 GiB upload: 64 KiB reads with the 1 KiB limit below took ~20 % more CPU
    # (the socket is paused and resumed, and the loop woken, once per read), these did not.
    body: int = 256 * 1024
    # asyncio's StreamReader stops reading the socket past twice its limit: with 1 KiB it holds
    # at most one read plus 2 KiB, and the kernel's socket buffer holds the rest.
    reader_limit: int = 1024
    body_reader_limit: int = 64 * 1024  # asyncio's default

    def __post_init__(self) -> None:
        if not 0 < self.reader_limit <= self.undecided <= self.body \
                or not self.reader_limit <= self.body_reader_limit <= self.body:
            raise ValueError("read sizes must satisfy 0 < reader_limit <= undecided <= body "
                             "and reader_limit <= body_reader_limit <= body")

    def size(self, bodies_allowed: int) -> int:
        """The read size of a connection with this many request bodies accepted and not yet read whole."""
        return self.body if bodies_allowed > 0 else self.undecided

    def limit(self, bodies_allowed: int) -> int:
        """The StreamReader limit that goes with ``size``."""
        return self.body_reader_limit if bodies_allowed > 0 else self.reader_limit


READ_SIZES = ReadSizes()
