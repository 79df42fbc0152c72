"""Issue 23 point 8: the suite never reads an operator's gateway.yaml or state in the checkout.

A copy of the checkout gets a gateway.yaml that is a FIFO: any test that opens it blocks, and
this test sees the open (a FIFO opened for writing without blocking succeeds only while a
reader holds it). The tests run in the copy are the ones that call the CLI without -c.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import REPO, _env

# In-process CLI calls without -c: before every test ran in its own folder, these read ./gateway.yaml.
PROBED = ("tests/e2e/test_iplist_commands.py",)


def test_cwd_of_a_test_is_its_own_temporary_folder(tmp_path: Path) -> None:
    assert Path.cwd() == tmp_path
    assert Path.cwd().resolve() != REPO and REPO not in Path.cwd().resolve().parents


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_suite_never_opens_a_gateway_yaml_in_the_checkout(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("gateway", "addons", "policies"):
        shutil.copytree(REPO / name, checkout / name, ignore=ignore)
    (checkout / "tests" / "e2e").mkdir(parents=True)
    for name in ("__init__.py", "conftest.py", "harness.py", "redis_server.py"):
        shutil.copy2(REPO / "tests" / name, checkout / "tests" / name)
    shutil.copy2(REPO / "tests" / "e2e" / "__init__.py", checkout / "tests" / "e2e" / "__init__.py")
    for name in PROBED:
        shutil.copy2(REPO / name, checkout / name)
    shutil.copy2(REPO / "pyproject.toml", checkout / "pyproject.toml")
    (checkout / "state").mkdir()
    fifo = checkout / "gateway.yaml"
    os.mkfifo(fifo)
    env = _env()
    env["PYTHONPATH"] = str(checkout)
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PROBED],
                           cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    opened = False
    deadline = time.monotonic() + 90
    while run.poll() is None and time.monotonic() < deadline:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: nobody has it open for reading
            time.sleep(0.02)
            continue
        opened = True
        os.close(fd)  # the reader sees end of file and goes on
    if run.poll() is None:
        run.kill()
    output = run.communicate()[0].decode("utf-8", "replace")
    assert not opened, "a test opened the checkout's gateway.yaml:\n" + output[-3000:]
    assert run.returncode == 0, output[-3000:]
    assert " passed" in output
    assert list((checkout / "state").iterdir()) == [], "a test wrote into the checkout's state folder"
