"""Issue 12 point 4: `make run` (gateway demo) ends with next steps that work as printed, the
console URL and an admin login for it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.harness import _env, _terminate, free_port
from tests.e2e.test_console import ConsoleClient

DEMO = Path(__file__).resolve().parents[2] / "gateway" / "config" / "demo.yaml"


def test_demo_banner_gives_working_next_steps_and_a_console_login(tmp_path: Path) -> None:
    config = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    admin = free_port()
    config["admin"]["listen"] = admin
    for base in config["bases"]:
        base["data"]["listen"] = free_port()
        if "print" in base:
            base["print"]["listen"] = free_port()
    data, prints = free_port(), free_port()
    config["bases"][0]["data"]["backend"] = config["bases"][1]["data"]["backend"] = f"http://127.0.0.1:{data}"
    config["bases"][0]["print"]["backend"] = f"http://127.0.0.1:{prints}"
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    out_path = tmp_path / "demo.out"
    with open(out_path, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "gateway", "demo", "--demo-config", "demo.yaml"],
                                   cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=_env())
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Stop with Ctrl+C" not in out_path.read_text(errors="replace"):
            assert process.poll() is None, out_path.read_text(errors="replace")
            time.sleep(0.1)
        banner = out_path.read_text(encoding="utf-8", errors="replace")
        assert "Next steps" in banner, banner
        login = re.search(r"Console: (http://\S+/console)\s+— log in as (\S+) / (\S+)", banner)
        assert login, banner
        url, user, password = login.groups()
        assert url == f"http://127.0.0.1:{admin}/console"
        console = ConsoleClient(url.rsplit("/console", 1)[0])
        try:
            console.login(user, password)
            # Logged in: the console's own pages answer, not the login form.
            page = console.http.get("/console/users")
            assert page.status_code == 200 and 'name="csrf"' in page.text, page.text[:300]
        finally:
            console.close()
        status_line = next(line for line in banner.splitlines() if line.strip().startswith(".venv") and " status" in line)
        words = shlex.split(status_line.split("#")[0])
        assert words[0] in (".venv/bin/gateway", r".venv\Scripts\gateway")
        done = subprocess.run([sys.executable, "-m", "gateway", *words[1:]], cwd=tmp_path, capture_output=True,
                              text=True, env=_env(), timeout=60)
        assert done.returncode == 0 and f"pid {process.pid}" in done.stdout, done.stdout + done.stderr
    finally:
        _terminate(process)


def test_demo_with_its_standin_port_taken_says_which_port_and_who_holds_it(tmp_path: Path) -> None:
    """Issue 23 point 14: one line naming the port and its owner, not a traceback."""
    import socket

    config = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    config["admin"]["listen"] = free_port()
    for base in config["bases"]:
        base["data"]["listen"] = free_port()
        if "print" in base:
            base["print"]["listen"] = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config["bases"][0]["data"]["backend"] = config["bases"][1]["data"]["backend"] = f"http://127.0.0.1:{port}"
        config["bases"][0]["print"]["backend"] = f"http://127.0.0.1:{free_port()}"
        (tmp_path / "demo.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "gateway", "demo", "--demo-config", "demo.yaml"], cwd=tmp_path,
                              capture_output=True, text=True, encoding="utf-8", env=_env(), timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert f"port {port} is taken by another program" in errors[0]
    assert f"(pid {os.getpid()})" in errors[0]  # this test's process holds it
