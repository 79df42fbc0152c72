"""ACME core: schedule, names, challenge answers, ARI and profiles against a recorded-answer CA,
and the listener / check / readyz of a running gateway whose CA is unreachable."""

from __future__ import annotations

import datetime
import socket
import ssl
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from acme.client import _renewal_info_path_component
from cryptography.hazmat.primitives import serialization

from gateway.certs import acme_storage as storage
from gateway.autocert.challenge import answer
from gateway.autocert.manager import due_reason, problems, refresh_renewal_info, renew_due
from gateway.autocert.schedule import planned_renewal, renewal_time, retry_delay
from gateway.certs.authority import create_ca, issue_server_certificate
from gateway.certs.install import key_pem
from gateway.config import ConfigError, GatewayConfig, parse_config
from gateway.store import open_store
from tests.acme_fake import FakeAcme, Recorded
from tests.harness import RunningGateway, Standin, base_entry, free_port, gateway_config, run_gateway_command

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 1, 1, tzinfo=UTC)


def config(tmp_path: Path, names: list[str], **acme: Any) -> GatewayConfig:
    data = {"state_dir": str(tmp_path / "state"), "acme": {"enabled": True, **acme},
            "bases": [{"id": "b1", "name": "Sklad", "data": {"listen": free_port(), "backend": "http://127.0.0.1:9"},
                       "tls": {"acme": names}}]}
    return parse_config(data, tmp_path / "gateway.yaml")


# --- schedule ---------------------------------------------------------------------------------


def test_renewal_at_two_thirds_or_half_for_short_certificates_and_earlier_by_ari() -> None:
    assert planned_renewal(T0, T0 + datetime.timedelta(days=90)) == T0 + datetime.timedelta(days=60)
    six_days = T0 + datetime.timedelta(days=6)
    assert planned_renewal(T0, six_days) == T0 + datetime.timedelta(days=3)
    ari = T0 + datetime.timedelta(days=10)
    assert renewal_time(T0, T0 + datetime.timedelta(days=90), ari) == ari
    assert renewal_time(T0, T0 + datetime.timedelta(days=90), T0 + datetime.timedelta(days=80)) == \
        T0 + datetime.timedelta(days=60)  # ARI never delays past the plan
    delays = [retry_delay(n) for n in (1, 2, 3, 12)]
    assert delays[:3] == [datetime.timedelta(minutes=m) for m in (1, 2, 4)]
    assert delays[3] == datetime.timedelta(hours=6)
    # close to expiry, retries come faster than the back-off alone would allow
    assert retry_delay(12, T0 + datetime.timedelta(hours=2), T0) == datetime.timedelta(minutes=12)


# --- configuration --------------------------------------------------------------------------


def test_names_from_the_issue_example_parse(tmp_path: Path) -> None:
    cfg = config(tmp_path, ["Sklad.Example.RU", "203.0.113.10"], email="admin@example.ru")
    assert cfg.bases[0].tls is not None and cfg.bases[0].tls.acme == ("sklad.example.ru", "203.0.113.10")
    assert cfg.acme.challenge_listen == 80 and cfg.acme.directory.startswith("https://acme-v02")


@pytest.mark.parametrize("name", ["192.168.1.10", "10.0.0.5", "127.0.0.1", "::1", "fd00::5", "sklad.local", "it02"])
def test_lan_names_are_refused_before_any_request(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(tmp_path, ["sklad.example.ru", name])
    text = str(info.value)
    assert "bases[0].tls.acme[1]" in text and name in text and "local CA" in text
    assert config(tmp_path, [name], allow_private=True).bases[0].tls.acme == (name,)  # type: ignore[union-attr]


@pytest.mark.parametrize("data, key", [
    ({"acme": {"enabled": False}, "tls": {"acme": ["a.example.ru"]}}, "bases[0].tls.acme"),
    ({"acme": {"enabled": True}, "tls": {"acme": ["a.example.ru"], "cert": "x.pem"}}, "bases[0].tls.acme"),
    ({"acme": {"enabled": True}, "tls": {"acme": ["*.example.ru"]}}, "bases[0].tls.acme[0]"),
    ({"acme": {"enabled": True}, "tls": {"acme": []}}, "bases[0].tls.acme"),
    ({"acme": {"enabled": True, "directory": "http://ca.example/dir"}, "tls": {"acme": ["a.example.ru"]}},
     "acme.directory"),
    ({"acme": {"enabled": True, "challenge_listen": 70000}, "tls": {"acme": ["a.example.ru"]}},
     "acme.challenge_listen"),
])
def test_bad_acme_configuration_names_the_key(tmp_path: Path, data: dict[str, Any], key: str) -> None:
    raw = {"acme": data["acme"], "bases": [{"id": "b1", "name": "B", "tls": data["tls"],
                                            "data": {"listen": 10560, "backend": "http://127.0.0.1:9"}}]}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, tmp_path / "gateway.yaml")
    assert f"{key}:" in str(info.value)


def test_http01_answers_only_known_tokens(tmp_path: Path) -> None:
    folder = storage.http_challenge_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "tok-EN_1").write_bytes(b"tok-EN_1.thumb")
    (tmp_path / "secret").write_bytes(b"secret")
    assert answer(tmp_path, "/.well-known/acme-challenge/tok-EN_1") == b"tok-EN_1.thumb"
    for path in ("/.well-known/acme-challenge/other", "/.well-known/acme-challenge/../../secret",
                 "/.well-known/acme-challenge/", "/", "/tok-EN_1"):
        assert answer(tmp_path, path) is None


# --- against the recorded-answer CA ------------------------------------------------------------


@pytest.fixture
def fake_ca(tmp_path: Path) -> Iterator[FakeAcme]:
    fake = FakeAcme(tmp_path / "fake", Recorded())
    yield fake
    fake.stop()


def _install_issued(cfg: GatewayConfig, folder: Path, now: datetime.datetime) -> Any:
    ca = create_ca(folder, common_name="Recorded CA")
    cert, key = issue_server_certificate(ca, ["sklad.example.ru"], [], days=90, now=now)
    pem = cert.public_bytes(serialization.Encoding.PEM) + key_pem(key)
    storage.write_private(storage.certificate_file(cfg.state_dir, "b1"), pem)
    status = storage.Status(names=["sklad.example.ru"], issued=True, issuer="CN=Recorded CA",
                            not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)
    storage.write_status(cfg.state_dir, "b1", status)
    return cert


def test_ari_window_moves_the_renewal_forward_only_for_the_certificate_it_names(
        tmp_path: Path, fake_ca: FakeAcme) -> None:
    cfg = config(tmp_path, ["sklad.example.ru"], directory=fake_ca.directory_url, ca_bundle=str(fake_ca.ca_bundle))
    base = cfg.bases[0]
    now = datetime.datetime.now(UTC)
    cert = _install_issued(cfg, tmp_path / "ca1", now)
    start, end = now + datetime.timedelta(days=5), now + datetime.timedelta(days=6)
    fake_ca.recorded.renewal_info[_renewal_info_path_component(cert)] = {
        "suggestedWindow": {"start": start.isoformat().replace("+00:00", "Z"),
                            "end": end.isoformat().replace("+00:00", "Z")},
        "explanationURL": "https://example.test/incident"}
    assert due_reason(cfg, base, now + datetime.timedelta(days=7)) is None  # plan: day 60
    refresh_renewal_info(cfg, now)
    status = storage.read_status(cfg.state_dir, "b1")
    assert status.ari_renewal is not None and start <= status.ari_renewal <= end
    assert status.next_renewal == status.ari_renewal
    assert status.ari_next_check is not None and status.ari_next_check > now  # Retry-After honoured
    assert due_reason(cfg, base, now + datetime.timedelta(days=4)) is None
    assert "renewal information" in (due_reason(cfg, base, end + datetime.timedelta(minutes=1)) or "")
    account_posts = fake_ca.posts("/new-account")
    assert account_posts and account_posts[0]["termsOfServiceAgreed"] is True

    # A certificate the CA has no renewal information for (404): the plan stands.
    other = config(tmp_path / "other", ["sklad.example.ru"], directory=fake_ca.directory_url,
                   ca_bundle=str(fake_ca.ca_bundle))
    _install_issued(other, tmp_path / "ca2", now)
    refresh_renewal_info(other, now)
    assert storage.read_status(other.state_dir, "b1").ari_renewal is None
    assert due_reason(other, other.bases[0], now + datetime.timedelta(days=7)) is None


def test_ip_order_goes_through_the_profile_and_the_cas_refusal_is_reported(
        tmp_path: Path, fake_ca: FakeAcme, caplog: pytest.LogCaptureFixture) -> None:
    fake_ca.recorded.directory_meta = {"profiles": {"classic": "90 days", "shortlived": "6 days, IP addresses"}}
    cfg = config(tmp_path, ["sklad.example.ru", "203.0.113.10"], directory=fake_ca.directory_url,
                 ca_bundle=str(fake_ca.ca_bundle), profile="shortlived")
    before = datetime.datetime.now(UTC)
    with caplog.at_level("ERROR", logger="gateway.acme"):
        [outcome] = renew_due(cfg)
    [order] = fake_ca.posts("/new-order")
    assert order["profile"] == "shortlived"
    assert {"type": "ip", "value": "203.0.113.10"} in order["identifiers"]
    assert {"type": "dns", "value": "sklad.example.ru"} in order["identifiers"]
    assert not outcome.ok and "too many certificates (5) already issued" in outcome.message
    assert "rateLimited" in outcome.message and "next attempt" in outcome.message
    status = storage.read_status(cfg.state_dir, "b1")
    assert status.failures == 1 and status.next_attempt is not None
    assert before + datetime.timedelta(seconds=50) < status.next_attempt < before + datetime.timedelta(minutes=2)
    assert any("too many certificates" in r.getMessage() and "next attempt" in r.getMessage() for r in caplog.records)
    assert renew_due(cfg) == []  # backing off

    # A profile the directory does not offer: refused before any order is sent.
    unknown = config(tmp_path / "p2", ["203.0.113.10"], directory=fake_ca.directory_url,
                     ca_bundle=str(fake_ca.ca_bundle), profile="sixday")
    [refused] = renew_due(unknown)
    assert "'sixday' is not offered" in refused.message and "classic, shortlived" in refused.message
    assert len(fake_ca.posts("/new-order")) == 1


def test_one_gateway_orders_at_a_time(tmp_path: Path, fake_ca: FakeAcme) -> None:
    cfg = config(tmp_path, ["sklad.example.ru"], directory=fake_ca.directory_url, ca_bundle=str(fake_ca.ca_bundle))
    store = open_store(cfg.state_dir)
    assert store.try_lock("acme-order", "other-machine:1", 60)
    [outcome] = renew_due(cfg)
    assert not outcome.ok and "another gateway is ordering" in outcome.message
    assert fake_ca.requests == []  # nothing was sent to the CA
    store.unlock("acme-order", "other-machine:1")
    [outcome] = renew_due(cfg)
    assert "too many certificates" in outcome.message  # this time it ordered


def test_expiring_unrenewed_certificate_is_a_problem(tmp_path: Path) -> None:
    cfg = config(tmp_path, ["sklad.example.ru"])
    now = datetime.datetime.now(UTC)
    _install_issued(cfg, tmp_path / "ca", now - datetime.timedelta(days=85))
    assert problems(cfg, now - datetime.timedelta(days=60)) == []
    status = storage.read_status(cfg.state_dir, "b1")
    status.failures, status.last_error = 3, "the CA answered: DNS problem: NXDOMAIN looking up A for sklad.example.ru"
    storage.write_status(cfg.state_dir, "b1", status)
    [(base_id, problem)] = problems(cfg, now)
    assert base_id == "b1" and "could not be renewed" in problem and "NXDOMAIN" in problem


# --- a running gateway whose CA is unreachable ---------------------------------------------------


def test_unreachable_ca_is_an_error_event_and_shows_in_check_and_readyz(
        standin: Standin, tmp_path: Path, gateway_factory: Callable[..., RunningGateway]) -> None:
    challenge, admin = free_port(), free_port()
    closed = free_port()
    cfg = gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", tls={"acme": ["sklad.example.ru"]})],
                         acme={"enabled": True, "directory": f"https://127.0.0.1:{closed}/dir",
                               "challenge_listen": challenge},
                         admin={"enabled": True, "host": "127.0.0.1", "listen": admin})
    gw = gateway_factory(cfg)
    line = gw.wait_for_log(r"ERROR.*certificate order for base 'Base b1' failed: .*next attempt [^;]*", 20)
    assert f"cannot reach the ACME directory https://127.0.0.1:{closed}/dir" in line
    # the base serves meanwhile: a temporary certificate for the same names from the local CA
    local_ca = ssl.create_default_context(cafile=gw.ca_file)
    with local_ca.wrap_socket(socket.create_connection(("127.0.0.1", gw.port("b1")), timeout=5),
                              server_hostname="sklad.example.ru") as tls:
        tls.sendall(b"GET /api/v1/DocTypes HTTP/1.1\r\nHost: sklad.example.ru\r\n\r\n")
        assert tls.recv(100).startswith(b"HTTP/1.1 200")
    # the challenge listener answers tokens only
    base = f"http://127.0.0.1:{challenge}"
    assert httpx.get(f"{base}/.well-known/acme-challenge/abc").status_code == 404
    assert httpx.get(f"{base}/").status_code == 404
    folder = storage.http_challenge_folder(gw.state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "abc").write_bytes(b"abc.key-authorization")
    found = httpx.get(f"{base}/.well-known/acme-challenge/abc")
    assert found.status_code == 200 and found.content == b"abc.key-authorization"
    with socket.create_connection(("127.0.0.1", challenge), timeout=5) as raw:
        raw.sendall(b"garbage\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400")

    check = run_gateway_command(gw.directory, "check")
    assert check.returncode == 1 and "no ACME certificate yet" in check.stdout and "cannot reach" in check.stdout
    ready = httpx.get(f"http://127.0.0.1:{admin}/readyz")
    assert ready.status_code == 503 and "cannot reach the ACME directory" in ready.text
    status = run_gateway_command(gw.directory, "cert", "acme", "status", "--json")
    assert '"last_error": "cannot reach the ACME directory' in status.stdout


@pytest.mark.parametrize("enabled, names, warning", [
    (True, [], "acme.enabled is true but no base names anything under bases[].tls.acme"),
])
def test_check_warns_when_acme_and_the_bases_disagree(tmp_path: Path, standin: Standin, enabled: bool,
                                                      names: list[str], warning: str) -> None:
    import yaml

    tls = {"acme": names} if names else None
    base = base_entry(standin, "b1", **({"tls": tls} if tls else {}))
    cfg = gateway_config(tmp_path, standin, bases=[base],
                         acme={"enabled": enabled, "directory": "https://127.0.0.1:1/dir", "challenge_listen": free_port()})
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    done = run_gateway_command(tmp_path, "check")
    assert warning in done.stdout, done.stdout + done.stderr
