"""Device certificates (mutual TLS), with real handshakes: curl --cert, Python ssl and HTTP/2
clients, revocation seen by two workers and by two gateways sharing a Redis, expired and foreign
certificates, the PKCS#12 files read back by cryptography and by openssl."""

from __future__ import annotations

import datetime
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from gateway.certs.device_service import enrol
from gateway.store import SqliteStore, keys
from gateway.store.devices import read_registry
from gateway.store.redis import RedisStore
from gateway.store.sqlite import DB_NAME
from tests.harness import (RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config, run_gateway_command,
                           start_gateway)
from tests.harness import _env as harness_env
from tests.redis_server import RedisServer

Factory = Callable[..., RunningGateway]
CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")
REVOCATION_LIMIT = 2.0
# Two workers starting on a loaded 2-CPU machine can take longer than the harness's default.
START_SECONDS = 60.0


def _password(output: str) -> str:
    return next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("password"))


def _pem_files(p12: Path, password: str, folder: Path, legacy: bool = False) -> tuple[Path, Path]:
    """The certificate and key as PEM, exported by openssl (curl and Python's ssl take PEM)."""
    cert, key = folder / f"{p12.stem}.crt", folder / f"{p12.stem}.key"
    extra = ["-legacy"] if legacy else []
    for out, flags in ((cert, ["-clcerts", "-nokeys"]), (key, ["-nocerts", "-nodes"])):
        subprocess.run([OPENSSL, "pkcs12", *extra, "-in", str(p12), "-passin", f"pass:{password}", *flags,
                        "-out", str(out)], check=True, capture_output=True, timeout=30)
    return cert, key


def _enrol(gw: RunningGateway, name: str, *flags: str) -> tuple[Path, Path, Path, str]:
    p12 = gw.directory / f"{name}.p12"
    output = cli_ok(gw.directory, "device", "add", name, "--out", str(p12), *flags)
    password = _password(output)
    cert, key = _pem_files(p12, password, gw.directory, legacy="--legacy-p12" in flags)
    return p12, cert, key, password


def _context(gw: RunningGateway, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=gw.ca_file)
    context.check_hostname = False
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def _get(gw: RunningGateway, base: str, context: ssl.SSLContext, path: str = "/echo/x",
         headers: dict[str, str] | None = None, http2: bool = False) -> httpx.Response:
    with httpx.Client(verify=context, http2=http2, timeout=10) as client:
        return client.get(gw.url(base, path=path), headers=headers)


def _refused(gw: RunningGateway, base: str, context: ssl.SSLContext) -> str:
    """The TLS error a fresh connection gets ("" when it got through)."""
    try:
        with socket.create_connection(("127.0.0.1", gw.port(base)), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                # TLS 1.3: the server's verdict on the client certificate arrives after the
                # client's handshake is done, with the first read.
                tls.sendall(b"GET /echo/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = tls.recv(64)
                return "" if answer.startswith(b"HTTP/1.1 200") else f"answer {answer[:20]!r}"
    except ssl.SSLError as e:
        return e.reason or str(e)
    except (ConnectionError, OSError) as e:
        return f"closed ({e})"


def _wait_refused(gw: RunningGateway, base: str, context: ssl.SSLContext, since: float, connections: int = 12) -> float:
    """Wall-clock time (time.time()) from which ``connections`` fresh connections in a row were
    refused (on SO_REUSEPORT, consecutive connections land on either worker); ``since`` is a
    wall-clock time too."""
    in_a_row = 0
    first = 0.0
    while time.time() - since < REVOCATION_LIMIT + 15:  # the command itself takes seconds to start
        if _refused(gw, base, context):
            first = first or time.time()
            in_a_row += 1
            if in_a_row >= connections:
                return first
        else:
            in_a_row, first = 0, 0.0
        time.sleep(0.02)
    raise AssertionError("the revoked device was still let in")


def _revoke(directory: Path, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "gateway", "-c", str(directory / "gateway.yaml"), "device",
                             "revoke", name], cwd=directory, env=harness_env(), stdout=subprocess.DEVNULL)


def _revoked_at(store: Any, name: str) -> float:
    """When the revocation was written to the store (the device list keeps it)."""
    try:
        device = read_registry(store).by_name(name)
    finally:
        store.close()
    assert device is not None and device.revoked
    return device.revoked


def _foreign_pair(folder: Path) -> tuple[Path, Path]:
    """A client certificate from a CA the gateway never heard of, with the same name as a device."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Gateway device CA (evil)")])
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tsd-01")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
            .sign(ca_key, hashes.SHA256()))
    cert_file, key_file = folder / "foreign.crt", folder / "foreign.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _mtls_config(tmp_path: Path, standin: Standin, **overrides: Any) -> dict[str, Any]:
    bases = [base_entry(standin, "req", "Склад", tls={"client_auth": "required"}),
             base_entry(standin, "opt", "Офис", tls={"client_auth": "optional"}),
             base_entry(standin, "login", "Касса", user_auth=True, tls={"client_auth": "optional"})]
    return gateway_config(tmp_path, standin, bases=bases, **overrides)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory, standin: Standin) -> Iterator[RunningGateway]:
    """One gateway with two workers for the tests of this module (each uses its own devices)."""
    tmp_path = tmp_path_factory.mktemp("mtls")
    config = _mtls_config(tmp_path, standin, workers=2,
                          admin={"enabled": True, "host": "127.0.0.1", "listen": free_port()},
                          log={"format": "json"})
    gw = start_gateway(tmp_path / "gw", config, wait=False)
    try:
        gw.wait_for_log(r"gateway ready", START_SECONDS)
    except AssertionError:
        gw.stop()
        raise
    yield gw
    gw.stop()


def test_required_base_admits_enrolled_devices_only(two_workers: RunningGateway, tmp_path: Path) -> None:
    gw = two_workers
    _p12, cert, key, _ = _enrol(gw, "tsd-01")

    # curl with the PEM exported from the PKCS#12 file: admitted, the device named to the back end,
    # a forged device header from the client gone.
    done = subprocess.run([CURL, "-sS", "--cacert", gw.ca_file, "--cert", str(cert), "--key", str(key),
                           "-H", "X-Gateway-Device: boss-laptop", gw.url("req", path="/echo/curl")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["headers"]["x-gateway-device"] == "tsd-01"

    # HTTP/2 (h2 under httpx) with the certificate.
    answer = _get(gw, "req", _context(gw, cert, key), http2=True)
    assert answer.http_version == "HTTP/2" and answer.json()["headers"]["x-gateway-device"] == "tsd-01"

    # Without a certificate: TLS 1.3's certificate_required alert, nothing reaches HTTP.
    assert "CERTIFICATE_REQUIRED" in _refused(gw, "req", _context(gw))
    # TLS 1.2 without one: a handshake failure alert.
    tls12 = _context(gw)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert "HANDSHAKE_FAILURE" in _refused(gw, "req", tls12)
    # A certificate from another CA, even with an enrolled device's name.
    foreign_cert, foreign_key = _foreign_pair(tmp_path)
    assert _refused(gw, "req", _context(gw, foreign_cert, foreign_key))

    # The optional base: a terminal without a certificate goes on to the usual checks, one with
    # a certificate is named.
    plain = _get(gw, "opt", _context(gw), headers={"X-Gateway-Device": "forged"})
    assert plain.status_code == 200 and "x-gateway-device" not in plain.json()["headers"]
    assert _get(gw, "opt", _context(gw, cert, key)).json()["headers"]["x-gateway-device"] == "tsd-01"

    # The access log names the device; the refusals are security events and counted by reason.
    assert '"device": "tsd-01"' in gw.wait_for_log(r'.*"device": "tsd-01".*')
    gw.wait_for_log(r"device certificate refused on base 'Склад': no-certificate")
    gw.wait_for_log(r"device certificate refused on base 'Склад': unknown-ca")
    metrics = httpx.get(f"http://127.0.0.1:{gw.config['admin']['listen']}/metrics", timeout=10).text
    assert 'gateway_device_refusals_total{reason="no-certificate"}' in metrics
    assert 'gateway_device_refusals_total{reason="unknown-ca"}' in metrics


def test_revoked_device_refused_within_2s_on_both_workers(two_workers: RunningGateway) -> None:
    gw = two_workers
    _p12, cert, key, _ = _enrol(gw, "tsd-02")
    context = _context(gw, cert, key)
    for _ in range(8):  # both workers admit it (consecutive connections land on either)
        assert _refused(gw, "req", context) == ""
    # A connection opened before the revocation stays open (keep-alive) and must stop too.
    kept = http.client.HTTPSConnection("127.0.0.1", gw.port("req"), context=context, timeout=10)
    kept.request("GET", "/echo/kept")
    first = kept.getresponse()
    assert first.status == 200 and first.read()

    started = time.time()
    revoking = _revoke(gw.directory, "tsd-02")  # the connections are tried while it runs
    refused_from = _wait_refused(gw, "req", context, started)
    assert revoking.wait(30) == 0
    latency = refused_from - _revoked_at(SqliteStore(gw.state_dir / DB_NAME), "tsd-02")
    print(f"revocation on 2 workers: refused {latency:.2f} s after the revocation was written")
    assert latency <= REVOCATION_LIMIT
    kept.request("GET", "/echo/kept-again")  # http.client never reconnects on its own: the same connection
    assert kept.getresponse().status == 403
    kept.close()
    listed = cli_ok(gw.directory, "device", "list")
    row = next(line for line in listed.splitlines() if line.startswith("tsd-02"))
    assert row.split()[-1] != "-"  # the revoked column holds a date

    # Enrolled again: the new certificate works, the revoked one stays refused.
    p12 = gw.directory / "tsd-02-new.p12"
    password = _password(cli_ok(gw.directory, "device", "add", "tsd-02", "--out", str(p12)))
    new_cert, new_key = _pem_files(p12, password, gw.directory)
    deadline = time.monotonic() + REVOCATION_LIMIT + 1
    while _refused(gw, "req", _context(gw, new_cert, new_key)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _refused(gw, "req", _context(gw, new_cert, new_key)) == ""
    assert _refused(gw, "req", context)


def test_expired_device_certificate_refused(two_workers: RunningGateway) -> None:
    gw = two_workers
    store = SqliteStore(gw.state_dir / DB_NAME)
    try:  # issued by the gateway's device CA 40 days ago, for 30 days
        issued = enrol(gw.state_dir, store, "tsd-old", days=30,
                       now=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=40))
    finally:
        store.close()
    p12 = gw.directory / "tsd-old.p12"
    p12.write_bytes(issued.p12)
    cert, key = _pem_files(p12, issued.password, gw.directory)
    time.sleep(1.0)  # the workers' next poll of the device list
    assert _refused(gw, "req", _context(gw, cert, key))
    gw.wait_for_log(r"device certificate refused on base 'Склад': expired")

    # Renewal: the new file works at once, the old certificate is refused like a revoked one.
    _p12, old_cert, old_key, _ = _enrol(gw, "tsd-r")
    renewed = gw.directory / "tsd-r-renewed.p12"
    password = _password(cli_ok(gw.directory, "device", "renew", "tsd-r", "--out", str(renewed)))
    new_cert, new_key = _pem_files(renewed, password, gw.directory)
    _wait_refused(gw, "req", _context(gw, old_cert, old_key), time.time(), connections=4)
    assert _refused(gw, "req", _context(gw, new_cert, new_key)) == ""


def test_pkcs12_files_modern_and_legacy_read_back(tmp_path: Path, standin: Standin) -> None:
    from tests.harness import _write_yaml
    directory = tmp_path / "gw"
    directory.mkdir()
    _write_yaml(directory / "gateway.yaml", _mtls_config(tmp_path, standin))
    for flags, legacy in (((), False), (("--legacy-p12",), True)):
        p12 = directory / f"d{int(legacy)}.p12"
        output = cli_ok(directory, "device", "add", f"d{int(legacy)}", "--out", str(p12), *flags)
        password = _password(output)
        assert oct(p12.stat().st_mode & 0o777) == "0o600"
        key, cert, chain = pkcs12.load_key_and_certificates(p12.read_bytes(), password.encode())
        assert cert is not None and cert.subject.rfc4514_string() == f"CN=d{int(legacy)}"
        assert isinstance(key, ec.EllipticCurvePrivateKey) != legacy  # legacy carries an RSA key
        assert chain and chain[0].subject != cert.subject  # the device CA rides along
        info = subprocess.run([OPENSSL, "pkcs12", "-in", str(p12), "-passin", f"pass:{password}", "-info",
                               "-noout"], capture_output=True, text=True, timeout=30)
        if legacy:
            # 3DES and a SHA-1 MAC throughout (no RC2-40, which even old Android refuses to trust).
            assert "RC2" not in info.stderr and "MAC: sha1" in info.stderr
            assert info.stderr.count("pbeWithSHA1And3-KeyTripleDES-CBC") == 2
            info = subprocess.run([OPENSSL, "pkcs12", "-legacy", "-in", str(p12), "-passin", f"pass:{password}",
                                   "-info", "-noout"], capture_output=True, text=True, timeout=30)
            assert info.returncode == 0, info.stderr
        else:
            assert info.returncode == 0, info.stderr
            assert "AES-256-CBC" in info.stderr and "sha256" in info.stderr.lower()
        wrong = subprocess.run([OPENSSL, "pkcs12", "-legacy", "-in", str(p12), "-passin", "pass:wrong",
                                "-noout"], capture_output=True, text=True, timeout=30)
        assert wrong.returncode != 0
    # The device CA's key is the owner's alone, apart from the server CA.
    ca_key = directory / "state" / "device-ca" / "ca.key"
    assert oct(ca_key.stat().st_mode & 0o777) == "0o600"
    assert not (directory / "state" / "certs" / "ca.key").exists() or \
        (directory / "state" / "certs" / "ca.key").read_bytes() != ca_key.read_bytes()


def test_tls11_only_terminal_gets_protocol_version_alert(two_workers: RunningGateway) -> None:
    gw = two_workers
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.warns(DeprecationWarning):  # Python's own view of TLS 1.1, which is the point
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    gw.mark_log()
    assert "PROTOCOL_VERSION" in _refused(gw, "opt", old)
    line = gw.wait_for_log(r".*TLS handshake refused.*")
    assert "127.0.0.1" in line and "Офис" in line and "TLSv1.1" in line
    assert "tls_version_client_min" not in gw.log() and "127.0.0.1:" + str(gw.port("opt")) not in line


def test_revocation_reaches_another_gateway_sharing_redis(tmp_path: Path, standin: Standin,
                                                          redis_server: RedisServer, gateway_factory: Factory) -> None:
    gateways: list[RunningGateway] = []
    for name in ("a", "b"):
        directory = tmp_path / name
        if gateways:  # the second machine gets the first's key file and device CA, as the guide says
            (directory / "state").mkdir(parents=True)
            shutil.copyfile(gateways[0].state_dir / keys.SECRET_FILE, directory / "state" / keys.SECRET_FILE)
            shutil.copytree(gateways[0].state_dir / "device-ca", directory / "state" / "device-ca")
        config = _mtls_config(tmp_path, standin, store={"backend": "redis", "redis_url": redis_server.url})
        gateways.append(gateway_factory(config, directory=directory, wait=False))
        gateways[-1].wait_for_log(r"gateway ready", START_SECONDS)
    a, b = gateways
    _p12, cert, key, _ = _enrol(a, "tsd-03")
    time.sleep(1.0)  # b's next poll of the shared list
    assert _refused(b, "req", _context(b, cert, key)) == ""
    started = time.time()
    revoking = _revoke(a.directory, "tsd-03")
    refused_from = _wait_refused(b, "req", _context(b, cert, key), started, connections=5)
    assert revoking.wait(30) == 0
    latency = refused_from - _revoked_at(RedisStore(redis_server.url), "tsd-03")
    print(f"revocation on the other gateway sharing Redis: refused {latency:.2f} s after the revocation was written")
    assert latency <= REVOCATION_LIMIT


def test_user_bound_to_a_device_logs_in_only_from_it(two_workers: RunningGateway) -> None:
    gw = two_workers
    password = "Kl4dov-shik-2026"
    cli_ok(gw.directory, "group", "add", "Кладовщики", "--role", "mobile", "--doc-type", "Поступление")
    cli_ok(gw.directory, "user", "add", "petrov", "--group", "Кладовщики", "--password-stdin",
           input=password + "\n", secrets=(password,))
    other_password = "Iv4nov-free-2026"
    cli_ok(gw.directory, "user", "add", "ivanov", "--group", "Кладовщики", "--password-stdin",
           input=other_password + "\n", secrets=(other_password,))
    _p12, cert, key, _ = _enrol(gw, "tsd-petrov", "--user", "petrov")
    _p12, other_cert, other_key, _ = _enrol(gw, "tsd-other")
    time.sleep(1.0)  # both workers have read the bindings
    auth = ("petrov", password)
    with httpx.Client(verify=_context(gw, cert, key), auth=auth, timeout=10) as own:
        answer = own.get(gw.url("login", path="/echo/own"))
        assert answer.status_code == 200
        assert answer.json()["headers"]["x-gateway-device"] == "tsd-petrov"
        assert answer.json()["headers"]["x-gateway-user"] == "petrov"
    # The right password from another device, or from none: a failed login, counted by the throttle.
    for context in (_context(gw, other_cert, other_key), _context(gw)):
        with httpx.Client(verify=context, auth=auth, timeout=10) as elsewhere:
            assert elsewhere.get(gw.url("login", path="/echo/stolen")).status_code == 401
    bans = cli_ok(gw.directory, "bans", "list")
    # ivanov, not bound to any device, still logs in from anywhere.
    with httpx.Client(verify=_context(gw), auth=("ivanov", other_password), timeout=10) as free:
        assert free.get(gw.url("login", path="/echo/free")).status_code == 200
    metrics = httpx.get(f"http://127.0.0.1:{gw.config['admin']['listen']}/metrics", timeout=10).text
    failed = [line for line in metrics.splitlines()
              if line.startswith("gateway_failed_logins_total") and "Касса" in line]
    assert failed and float(failed[0].rsplit(" ", 1)[1]) >= 2, (failed, bans)


def test_check_warns_30_days_before_device_certificates_expire(two_workers: RunningGateway) -> None:
    gw = two_workers
    store = SqliteStore(gw.state_dir / DB_NAME)
    try:
        enrol(gw.state_dir, store, "tsd-short", days=20)
    finally:
        store.close()
    done = run_gateway_command(gw.directory, "check")
    assert "device certificate tsd-short expires on" in done.stdout + done.stderr
    assert "gateway device renew tsd-short" in done.stdout + done.stderr
