"""The demo configuration: its packaged default (``gateway/config/demo.yaml``, package data, so
``gateway demo`` works from an installed gateway and not only from the checkout) and where the demo
keeps its copy: ``demo/gateway.yaml`` in the current folder, written from the default the first time
``gateway demo`` runs there. The copy is the operator's to edit; the README's ``-c demo/gateway.yaml``
commands name it, and the port-owner probe takes a bare ``gateway demo`` process to be serving it."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEMO_CONFIG = Path("demo") / "gateway.yaml"
DEMO_DEFAULT_TEXT = files("gateway.config").joinpath("demo.yaml").read_text(encoding="utf-8")


def ensure_demo_config(path: Path) -> bool:
    """Write the packaged default to ``path`` when it is missing; True when it was written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEMO_DEFAULT_TEXT, encoding="utf-8")
    return True
