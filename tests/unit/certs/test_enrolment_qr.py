"""Issue 12 point 8: the enrolment QR code points where a phone can go; honest text without a local CA."""

from __future__ import annotations

from pathlib import Path

from gateway.certs.authority import create_ca
from gateway.certs.enrolment import EnrolmentContent, answer, qr_host


def test_qr_never_uses_loopback_or_a_bare_host_name() -> None:
    assert qr_host("127.0.0.1:8079", (), ("192.168.1.5",), 8079) == "192.168.1.5:8079"
    assert qr_host("localhost:8079", (), (), 8079) is None
    assert qr_host("it02:8079", (), (), 8079) is None
    assert qr_host("[::1]:8079", (), ("10.0.0.2",), 8079) == "10.0.0.2:8079"
    assert qr_host("127.0.0.1:8079", ("it02", "gw.shop.lan"), ("192.168.1.5",), 8079) == "gw.shop.lan:8079"
    assert qr_host("127.0.0.1:8079", ("10.1.2.3",), (), 8079) == "10.1.2.3:8079"
    assert qr_host("192.168.1.10:8079", (), ("10.0.0.9",), 8079) == "192.168.1.10:8079"


def test_page_opened_on_the_server_itself_still_gets_a_reachable_qr(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    with_lan = EnrolmentContent.for_ca(ca.certificate, (), ("192.168.7.7",), 8079)
    assert "<svg" in answer("GET", "/", with_lan, "127.0.0.1:8079").body.decode()
    nowhere = EnrolmentContent.for_ca(ca.certificate, (), (), 8079)
    assert "<svg" not in answer("GET", "/", nowhere, "127.0.0.1:8079").body.decode()


def test_without_a_local_ca_the_page_does_not_promise_trust() -> None:
    text = answer("GET", "/", None).body.decode()
    assert "devices need no setup" not in text.replace("public CA needs no setup", "")
    assert "company CA" in text and "self-signed" in text
