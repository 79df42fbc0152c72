"""Issue 19, faults 3 and 4: the state folder's disk and the log disk full, on a real small tmpfs.

State: no password is checked unless its attempt could be recorded first (503 with Retry-After
instead), an ERROR names the folder and the cause, /readyz says so; with room again logins work
within 10 s, no restart, and the database is intact with every user, group and ban. A damaged
gateway.db at start is refused in one line naming the file and the way back.
Log: the gateway serves on while its log disk is full; the lines it lost are counted
(gateway_log_lines_dropped_total) and reported once there is room again.

Needs ``mount -t tmpfs`` (root on Linux); skipped with the reason where it is not permitted.

Read-only: the state folder's disk turned read-only under the running gateway, the way it
happens — the kernel remounting a file system read-only after an error (ext4's
``errors=remount-ro``, here on a small loop-mounted image, triggered through
``/sys/fs/ext4/<dev>/trigger_fs_error``). ``mount -o remount,ro`` of a tmpfs cannot show it:
the kernel refuses that (EBUSY) while a process holds a file open for writing there, and the
running gateway always holds its database so. Writable again: unmounted, checked with
``e2fsck``, mounted again — which needs the gateway to have let go of its files.
"""

from __future__ import annotations

import base64
import os
import re
import sqlite3
import ssl
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config, run_gateway_command

PASSWORD, WRONG = "Sklad2024x", "Wrong12345"
RECOVERY_LIMIT = 10.0
# Room for the CA, the certificates and the database; small enough to fill in a moment.
TMPFS_SIZE = "6m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    mounted: list[Path] = []

    def mount(point: Path) -> Path:
        point.mkdir(parents=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill (needs root on Linux): {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture
def ext4_disk(tmp_path: Path) -> Iterator[Callable[[Path], Callable[[], None]]]:
    """mount(point) → the disk mounted there; calling the result mounts it again (after fsck)."""
    mounted: list[Path] = []

    def mount(point: Path) -> Callable[[], None]:
        image = tmp_path / "state-disk.img"
        with open(image, "wb") as f:
            f.truncate(32 * 1024 * 1024)
        made = subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", str(image)], capture_output=True,
                              text=True)
        if made.returncode != 0:
            pytest.skip(f"cannot make an ext4 image (mkfs.ext4, e2fsprogs): {made.stderr.strip()}")
        point.mkdir(parents=True)
        options = "loop,errors=remount-ro"
        done = subprocess.run(["mount", "-o", options, str(image), str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot loop-mount an ext4 image (needs root and loop devices on Linux): "
                        f"{done.stderr.strip()}")
        mounted.append(point)
        os.chmod(point, 0o700)

        def again() -> None:
            assert subprocess.run(["umount", str(point)], capture_output=True, text=True).returncode == 0, \
                f"the state disk cannot be unmounted: files still held on it: {held_under(point)}"
            subprocess.run(["e2fsck", "-f", "-y", str(image)], capture_output=True)  # exit 1: errors fixed
            remounted = subprocess.run(["mount", "-o", options, str(image), str(point)], capture_output=True,
                                       text=True)
            assert remounted.returncode == 0, remounted.stderr

        return again

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def held_under(point: Path) -> list[str]:
    """Every open file and mapping of any process under ``point`` (what keeps a disk busy)."""
    prefix, found = str(point.resolve()), []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
            maps = [line.split()[-1] for line in (proc / "maps").read_text().splitlines() if "/" in line]
        except OSError:
            continue
        found += [f"{proc.name}: {path}" for path in sorted(set(links + maps)) if path.startswith(prefix)]
    return found


def turn_read_only(point: Path) -> None:
    """What a disk error does under errors=remount-ro: the kernel makes the mounted disk read-only."""
    device = Path(subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(point)], capture_output=True, text=True,
                                 check=True).stdout.strip()).name
    trigger = Path("/sys/fs/ext4") / device / "trigger_fs_error"
    if not trigger.exists():
        pytest.skip(f"{trigger} is missing: this kernel cannot be asked for an ext4 error")
    trigger.write_text("gateway test: the state disk fails\n")
    probe = point / "probe"
    with pytest.raises(OSError, match="Read-only file system"):
        probe.write_text("x")


def fill(folder: Path) -> Path:
    """Every free byte of the disk under ``folder`` taken by one file; removing it frees them."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass
    return filler


def basic(secret: str, login: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()}


def client(gw: RunningGateway, base: str, source: str = "127.0.0.1") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source, verify=ssl.create_default_context(cafile=gw.ca_file))
    return httpx.Client(transport=transport, base_url=gw.url(base), timeout=15)


def test_full_state_disk_refuses_logins_until_room_returns_and_loses_nothing(
        tmp_path: Path, standin: Standin, small_disk: Callable[[Path], Path],
        gateway_factory: Callable[..., RunningGateway]) -> None:
    directory = tmp_path / "gw"
    state = small_disk(directory / "state").resolve()
    admin_port = free_port()
    bases = [base_entry(standin, "b1", "Склад", user_auth=True)]
    cfg = gateway_config(tmp_path, standin, bases=bases, auth={"cache_seconds": 0},
                         admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port})
    gw = gateway_factory(cfg, directory=directory)
    cli_ok(directory, "group", "add", "Операторы", "--role", "mobile", "--doc-type", "Поступление")
    for name in ("Иванов", "Петров"):
        cli_ok(directory, "user", "add", name, "--group", "Операторы", "--password-stdin",
               input=f"{PASSWORD}-{name}\n", secrets=(PASSWORD,))
    with client(gw, "b1", "127.0.0.3") as attacker:  # a ban that must survive
        for _ in range(10):
            assert attacker.get("/echo", headers=basic(WRONG)).status_code == 401
        assert attacker.get("/echo", headers=basic(WRONG)).status_code == 429
    bans_before = cli_ok(directory, "bans", "list")
    assert "127.0.0.3" in bans_before

    admin = f"http://127.0.0.1:{admin_port}"
    with client(gw, "b1") as c:
        assert c.get("/echo", headers=basic(f"{PASSWORD}-Иванов")).status_code == 200
        gw.mark_log()
        filler = fill(state)
        # Some writes may still fit in pages SQLite has already allocated; soon one does not.
        marker = uuid.uuid4().hex
        statuses = []
        for i in range(200):
            secret = WRONG if i % 2 else f"{PASSWORD}-Петров"
            answer = c.get(f"/echo/{marker}", headers=basic(secret))
            statuses.append(answer.status_code)
            if answer.status_code == 503:
                assert answer.headers["Retry-After"] == "5"
                break
        assert statuses[-1] == 503, statuses
        # From now on nothing is checked without its record: no 401 (a check) and no 200.
        for secret in (WRONG, f"{PASSWORD}-Петров", WRONG):
            answer = c.get(f"/echo/{marker}-full", headers=basic(secret))
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "5", answer.status_code
        assert f"{marker}-full" not in standin.log_path.read_text(encoding="utf-8", errors="replace")
        error = gw.wait_for_log(r"ERROR .*store down: .*", 5)
        assert str(state) in error and "full" in error, error
        ready = httpx.get(f"{admin}/readyz", timeout=10)
        assert ready.status_code == 503 and str(state) in ready.text, ready.text

        filler.unlink()
        freed = time.monotonic()
        while True:
            answer = c.get("/echo", headers=basic(f"{PASSWORD}-Петров"))
            if answer.status_code == 200:
                break
            assert answer.status_code == 503, answer.status_code
            assert time.monotonic() - freed < RECOVERY_LIMIT, "no login within 10 s of the disk having room"
            time.sleep(0.1)
        took = time.monotonic() - freed
    print(f"\nlogin works {took:.2f} s after the state disk has room again")
    deadline = time.monotonic() + 5
    while httpx.get(f"{admin}/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, httpx.get(f"{admin}/readyz", timeout=10).text
        time.sleep(0.2)
    gw.wait_for_log(r"INFO .*store back", 5)
    assert gw.process.poll() is None
    gw.stop()

    with sqlite3.connect(state / "gateway.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert {row[0] for row in db.execute("SELECT name FROM users")} == {"Иванов", "Петров"}
        assert [row[0] for row in db.execute("SELECT name FROM groups")] == ["Операторы"]
    assert "127.0.0.3" in cli_ok(directory, "bans", "list")


def test_read_only_state_disk_refuses_logins_until_it_is_writable_again_and_loses_nothing(
        tmp_path: Path, standin: Standin, ext4_disk: Callable[[Path], Callable[[], None]],
        gateway_factory: Callable[..., RunningGateway]) -> None:
    directory = tmp_path / "gw"
    state = directory / "state"
    mount_again = ext4_disk(state)
    state = state.resolve()
    admin_port = free_port()
    bases = [base_entry(standin, "b1", "Склад", user_auth=True)]
    cfg = gateway_config(tmp_path, standin, bases=bases, auth={"cache_seconds": 0},
                         admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port})
    gw = gateway_factory(cfg, directory=directory)
    cli_ok(directory, "group", "add", "Операторы", "--role", "mobile", "--doc-type", "Поступление")
    for name in ("Иванов", "Петров"):
        cli_ok(directory, "user", "add", name, "--group", "Операторы", "--password-stdin",
               input=f"{PASSWORD}-{name}\n", secrets=(PASSWORD,))
    with client(gw, "b1", "127.0.0.3") as attacker:  # a ban that must survive
        for _ in range(10):
            assert attacker.get("/echo", headers=basic(WRONG)).status_code == 401
        assert attacker.get("/echo", headers=basic(WRONG)).status_code == 429
    assert "127.0.0.3" in cli_ok(directory, "bans", "list")

    admin = f"http://127.0.0.1:{admin_port}"
    with client(gw, "b1") as c:
        assert c.get("/echo", headers=basic(f"{PASSWORD}-Иванов")).status_code == 200
        gw.mark_log()
        turn_read_only(state)
        marker = uuid.uuid4().hex
        # From the first attempt on, nothing is checked without its record: no 401 and no 200.
        for secret in (f"{PASSWORD}-Петров", WRONG, f"{PASSWORD}-Иванов", WRONG):
            answer = c.get(f"/echo/{marker}", headers=basic(secret))
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "5", answer.status_code
        assert marker not in standin.log_path.read_text(encoding="utf-8", errors="replace")
        error = gw.wait_for_log(r"ERROR .*store down: .*", 5)
        assert str(state) in error and "read-only file system" in error.lower(), error
        ready = httpx.get(f"{admin}/readyz", timeout=10)
        assert ready.status_code == 503 and str(state) in ready.text, ready.text

        time.sleep(1.5)  # the gateway lets go of its files on the spent disk
        mount_again()
        writable = time.monotonic()
        while True:
            answer = c.get("/echo", headers=basic(f"{PASSWORD}-Петров"))
            if answer.status_code == 200:
                break
            assert answer.status_code == 503, answer.status_code
            assert time.monotonic() - writable < RECOVERY_LIMIT, "no login within 10 s of the disk being writable"
            time.sleep(0.1)
        took = time.monotonic() - writable
    print(f"\nlogin works {took:.2f} s after the state disk is writable again")
    deadline = time.monotonic() + 5
    while httpx.get(f"{admin}/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, httpx.get(f"{admin}/readyz", timeout=10).text
        time.sleep(0.2)
    log = gw.log()
    assert len(re.findall(r"ERROR .*store down", log)) == 1, log[-3000:]
    gw.wait_for_log(r"INFO .*store back", 5)
    assert gw.process.poll() is None
    gw.stop()

    with sqlite3.connect(state / "gateway.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert {row[0] for row in db.execute("SELECT name FROM users")} == {"Иванов", "Петров"}
        assert [row[0] for row in db.execute("SELECT name FROM groups")] == ["Операторы"]
    assert "127.0.0.3" in cli_ok(directory, "bans", "list")


def test_damaged_database_is_refused_in_one_line_and_never_replaced(
        tmp_path: Path, standin: Standin, gateway_factory: Callable[..., RunningGateway]) -> None:
    cfg = gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", user_auth=True)])
    gw = gateway_factory(cfg, directory=tmp_path / "gw")
    cli_ok(gw.directory, "group", "add", "Операторы", "--role", "mobile", "--doc-type", "Поступление")
    gw.stop()
    db = gw.state_dir / "gateway.db"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    garbage = bytes(range(256)) * 64
    db.write_bytes(garbage)

    again = gateway_factory(cfg, directory=gw.directory, wait=False)
    assert again.process.wait(30) == 2
    lines = again.log().strip().splitlines()
    refusal = [line for line in lines if str(db) in line]
    assert len(refusal) == 1 and "damaged" in refusal[0] and "backup" in refusal[0], lines
    assert "Traceback" not in again.log()
    done = run_gateway_command(gw.directory, "user", "list")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and str(db) in done.stderr and "backup" in done.stderr
    assert db.read_bytes() == garbage  # neither start nor CLI made a new store over it


def test_full_log_disk_serves_on_and_counts_the_lines_it_lost(
        tmp_path: Path, standin: Standin, small_disk: Callable[[Path], Path],
        gateway_factory: Callable[..., RunningGateway]) -> None:
    logs = small_disk(tmp_path / "logs")
    admin_port = free_port()
    cfg: dict[str, Any] = gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1")],
                                         log={"file": str(logs / "gateway.log")},
                                         admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port})
    gw = gateway_factory(cfg, directory=tmp_path / "gw", wait=False)
    log_file = logs / "gateway.log"
    deadline = time.monotonic() + 20
    while "gateway ready" not in (log_file.read_text() if log_file.exists() else ""):
        assert time.monotonic() < deadline and gw.process.poll() is None, gw.log()
        time.sleep(0.1)
    admin = f"http://127.0.0.1:{admin_port}"

    def dropped() -> float:
        found = re.search(r"^gateway_log_lines_dropped_total (\S+)$", httpx.get(f"{admin}/metrics", timeout=10).text,
                          re.M)
        assert found, "gateway_log_lines_dropped_total missing"
        return float(found.group(1))

    assert dropped() == 0
    filler = fill(logs)
    with client(gw, "b1") as c:
        # An access line each; the first few still fit in the log file's last, half-used page.
        for _ in range(80):
            assert c.get("/echo").status_code == 200
        lost = dropped()
        assert lost >= 40, lost
        filler.unlink()
        assert c.get("/echo").status_code == 200
    text = log_file.read_text(encoding="utf-8", errors="replace")
    report = re.search(r"WARNING .*?(\d+) log line\(s\) could not be written since .*?\((.*?)\)", text)
    assert report, text[-2000:]
    assert int(report.group(1)) >= lost
    print(f"\n{lost:.0f} log lines dropped while the log disk was full; reported: {report.group(0)}")
    assert "No space left on device" in report.group(2)
    assert gw.process.poll() is None
