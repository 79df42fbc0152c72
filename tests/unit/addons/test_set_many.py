"""addons._headers.set_many gives exactly what setting the headers one by one gives."""

import random

from mitmproxy import http

from addons._headers import set_many

NAMES = [b"Host", b"host", b"X-Forwarded-For", b"x-forwarded-for", b"Forwarded", b"X-Real-IP", b"Accept",
         b"Authorization", b"X-FORWARDED-HOST", b"Cookie"]
UPDATES = [(b"Host", b"backend:80"), (b"X-Forwarded-For", b"127.0.0.2"), (b"X-Forwarded-Proto", b"https"),
           (b"X-Forwarded-Host", b"gw.example"), (b"Forwarded", b"for=127.0.0.2;proto=https"),
           (b"X-Real-IP", b"127.0.0.2")]


def test_same_result_as_one_by_one_on_random_header_sets() -> None:
    rng = random.Random(11)
    for _ in range(2000):
        fields = tuple((rng.choice(NAMES), b"v%d" % i) for i in range(rng.randint(0, 8)))
        updates = rng.sample(UPDATES, rng.randint(0, len(UPDATES)))
        expected = http.Headers(fields)
        for name, value in updates:
            expected[name] = value
        actual = http.Headers(fields)
        set_many(actual, updates)
        assert actual.fields == expected.fields, (fields, updates)
