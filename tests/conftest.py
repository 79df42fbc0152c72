from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.harness import RunningGateway, Standin, start_gateway, start_standin
from tests.redis_server import RedisServer, start_redis


@pytest.fixture(autouse=True)
def own_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test runs in its own temporary folder (issue 23 point 8).

    The CLI's default configuration is ./gateway.yaml: a test that calls it without -c from the
    checkout would read an operator's real configuration there (its log.file, its state folder
    and user store). Tests that need the repository name it through tests.harness.REPO.
    """
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    server = start_standin(tmp_path_factory.mktemp("standin") / "standin.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documentation site as `make docs` builds it (`mkdocs build --strict`), once a session."""
    out = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(out)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., RunningGateway]]:
    started: list[RunningGateway] = []

    def start(config: dict[str, Any], directory: Path | None = None, **kwargs: Any) -> RunningGateway:
        gw = start_gateway(directory or tmp_path / f"gw{len(started)}", config, **kwargs)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of the test's own (scripts/system-deps.sh installs it)."""
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()
