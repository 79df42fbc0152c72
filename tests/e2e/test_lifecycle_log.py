"""Issue 23 point 13: a stop is logged (told apart from a crash), a reload says what it could
not apply and when it changed nothing, and a machine with workers says its warnings once."""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path
from typing import Callable

import pytest

from tests.harness import RunningGateway, Standin, base_entry, free_port, gateway_config, run_gateway_command

Factory = Callable[..., RunningGateway]


def test_reload_without_change_log_file_change_and_stop(standin: Standin, gateway_factory: Factory,
                                                        tmp_path: Path) -> None:
    config = gateway_config(tmp_path, standin, workers=1)
    gw = gateway_factory(config)
    done = run_gateway_command(gw.directory, "reload")
    assert done.returncode == 0 and "(no change)" in done.stdout, done.stdout + done.stderr
    gw.wait_for_log(r"configuration reloaded \(`gateway reload`\): no change")

    changed = copy.deepcopy(config)
    changed["log"] = {"file": str(tmp_path / "elsewhere.log")}
    gw.reload(changed, expect=r"log\.file changed in the configuration; this takes effect only after a restart")
    done = run_gateway_command(gw.directory, "reload")
    assert "log.file changed: takes effect only after a restart" in done.stdout, done.stdout

    gw.process.send_signal(signal.SIGTERM)
    assert gw.process.wait(15) == 0
    log = gw.log()
    assert "stopping (SIGTERM)" in log and log.rstrip().splitlines()[-1].split(": ", 1)[1].startswith("stopped "), log[-600:]


@pytest.mark.skipif(os.name != "posix", reason="workers need Linux")
def test_workers_say_warnings_once_and_label_their_private_admin(standin: Standin, gateway_factory: Factory,
                                                                 tmp_path: Path) -> None:
    base = base_entry(standin, "b1", "Открытый склад", https=False)
    config = gateway_config(tmp_path, standin, bases=[base], workers=2,
                            admin={"enabled": True, "host": "127.0.0.1", "listen": free_port()})
    gw = gateway_factory(config)
    log = gw.log()
    assert log.count("is served over plain HTTP (https: false)") == 1, log
    assert log.count("worker's private admin listener on http://127.0.0.1:") == 2
    changed = copy.deepcopy(config)
    changed["workers"] = os.cpu_count() or 1
    changed["workers"] = "auto" if changed["workers"] == 2 else 3
    gw.reload(changed, expect=r"configuration reloaded")
    import time
    time.sleep(1.5)  # every process has had its turn to log
    later = gw.log()[len(log):]
    assert later.count("is served over plain HTTP (https: false)") == 1, later
    if changed["workers"] == "auto":  # auto means 2 here: the same count, nothing to restart
        assert "workers changed" not in later
    else:
        assert later.count("workers changed in the configuration") == 1, later
    gw.process.send_signal(signal.SIGTERM)
    assert gw.process.wait(20) == 0
    final = gw.log()
    assert final.count("stopping (SIGTERM)") == 1 and final.rstrip().splitlines()[-1].split(": ", 1)[1].startswith("stopped ")
