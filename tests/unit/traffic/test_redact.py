"""Secrets in URLs and headers are masked before logging; everything else is left readable."""

from __future__ import annotations

import pytest
from mitmproxy.http import Headers

from gateway.traffic.redact import MASK, redact_headers, redact_url

URLS = [
    ("/api/v1/session?username=ivanov&password=S3cret-pw",
     "/api/v1/session?username=ivanov&password=***"),
    ("/x?PASSWORD=a&Pwd=b&pass=c&passwd=d", "/x?PASSWORD=***&Pwd=***&pass=***&passwd=***"),
    ("/x?token=t&access_token=u&refresh_token=v&apiKey=k&api_key=l&key=m",
     "/x?token=***&access_token=***&refresh_token=***&apiKey=***&api_key=***&key=***"),
    ("/x?secret=s&client_secret=c&barcode=2000000000015&auth=a", "/x?secret=***&client_secret=***&barcode=***&auth=***"),
    ("/x?userPassword=p&user-password=q", "/x?userPassword=***&user-password=***"),
    ("/x?pass%77ord=p", "/x?pass%77ord=***"),  # an encoded name is still a password
    ("/x?a=1;password=p", "/x?a=1;password=***"),
    ("/x?password=", "/x?password=***"),
    ("/x?password", "/x?password"),  # no value, nothing to hide
    ("/x?$top=10&$filter=Name eq 'a'&keyword=box&monkey=1&username=u",
     "/x?$top=10&$filter=Name eq 'a'&keyword=box&monkey=1&username=u"),
    ("/api/v1/Products", "/api/v1/Products"),
    ("/x?password=a#frag", "/x?password=***#frag"),
    ("https://user:pw@host/x?token=t", f"https://{MASK}@host/x?token={MASK}"),
]


@pytest.mark.parametrize(("url", "expected"), URLS)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redacted_url_has_no_secret_left() -> None:
    secret = "Sup3rSecretPw"
    assert secret not in redact_url(f"/api/v1/session?username=u&password={secret}&token={secret}")


def test_redact_headers_masks_credentials_keeps_the_rest() -> None:
    headers = {
        "Authorization": "Basic aXZhbm92OlMzY3JldA==",
        "Proxy-Authorization": "Bearer abc.def",
        "Cookie": "gateway_session=tok123; lang=ru",
        "X-Gateway-Session": "tok123",
        "Host": "it02:10560",
        "User-Agent": "MobileSMARTS/3.2",
    }
    out = redact_headers(headers)
    assert out == {
        "Authorization": "Basic ***",
        "Proxy-Authorization": "Bearer ***",
        "Cookie": "gateway_session=***; lang=***",
        "X-Gateway-Session": "***",
        "Host": "it02:10560",
        "User-Agent": "MobileSMARTS/3.2",
    }


def test_unencoded_basic_keeps_only_the_scheme() -> None:
    assert redact_headers({"authorization": "Basic ivanov:S3cret"}) == {"authorization": "Basic ***"}
    assert redact_headers({"Authorization": "S3cretWithoutScheme"}) == {"Authorization": MASK}


def test_redact_mitmproxy_headers_keeps_repeats() -> None:
    headers = Headers([(b"Cookie", b"a=1"), (b"cookie", b"gateway_session=s"), (b"X-Api-Key", b"k"), (b"Accept", b"*/*")])
    out = redact_headers(headers)
    assert out == {"Cookie": "a=***; gateway_session=***", "X-Api-Key": MASK, "Accept": "*/*"}


def test_redact_header_pairs() -> None:
    out = redact_headers([("Set-Cookie", "gateway_session=abc; Secure; HttpOnly"), ("X-Auth-Token", "t")])
    assert out == {"Set-Cookie": "gateway_session=***", "X-Auth-Token": MASK}


@pytest.mark.parametrize(("url", "masked"), [
    ("/a;password=QsecretPW11", "/a;password=***"),
    ("/api/v1;token=abc/Docs?x=1", "/api/v1;token=***/Docs?x=1"),
    ("/a;jsessionid=1;b=2", "/a;jsessionid=1;b=2"),
])
def test_path_parameters_are_masked_too(url: str, masked: str) -> None:
    assert redact_url(url) == masked
