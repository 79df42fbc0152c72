"""Issue 19, fault 7: certificate and key files replaced by garbage, half written, or by a key that
does not match: the previous pair keeps serving (checked on real handshakes by the served
certificate's fingerprint), an ERROR names the file, and fixed files are picked up."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from tests.e2e.test_tls import make_pair, peer_sha256
from tests.harness import RunningGateway, Standin, base_entry, gateway_config


def test_broken_certificate_files_keep_the_old_pair_serving_and_fixed_ones_are_picked_up(
        standin: Standin, tmp_path: Path, gateway_factory: Callable[..., RunningGateway]) -> None:
    cert_file, key_file, served_sha = make_pair(tmp_path / "live", "localhost")
    gw = gateway_factory(gateway_config(tmp_path, standin, bases=[
        base_entry(standin, "b1", tls={"cert": str(cert_file), "key": str(key_file)})]), wait=False)
    gw.wait_for_log(r"gateway ready", 60)  # a slow start on a loaded machine is not the fault under test
    port = gw.port("b1")
    assert peer_sha256(port) == served_sha
    good_cert, good_key = cert_file.read_bytes(), key_file.read_bytes()
    other_cert, other_key, _ = make_pair(tmp_path / "other", "localhost")

    breakages = [
        ("garbage certificate", cert_file, b"\x00\xff garbage \x13\x37" * 40, cert_file),
        ("half-written certificate", cert_file, good_cert[: len(good_cert) // 2], cert_file),
        ("garbage key", key_file, b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n", key_file),
        ("half-written key", key_file, good_key[: len(good_key) // 2], key_file),
        ("key of another certificate", key_file, other_key.read_bytes(), cert_file),
    ]
    for what, target, content, named in breakages:
        gw.mark_log()
        target.write_bytes(content)
        line = gw.wait_for_log(r"ERROR.*new certificate refused[^\n]*", timeout=10)
        assert str(named) in line or named.name in line, (what, line)
        for _ in range(3):
            assert peer_sha256(port) == served_sha, what
        # Repaired: the same good pair again is not a change to serve; a new good pair is.
        cert_file.write_bytes(good_cert)
        key_file.write_bytes(good_key)

    new_cert, new_key, new_sha = make_pair(tmp_path / "next", "localhost")
    gw.mark_log()
    shutil.copyfile(new_key, key_file)
    shutil.copyfile(new_cert, cert_file)
    gw.wait_for_log(r"certificate .* replaced", timeout=10)
    assert peer_sha256(port) == new_sha
    assert "-----BEGIN" not in gw.log() and good_key[40:80].decode() not in gw.log() and "Traceback" not in gw.log()
