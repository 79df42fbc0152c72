"""Where the demo configuration lives: what ``gateway demo`` (``make run``) loads by default, and
what the port-owner probe takes a bare ``gateway demo`` process to be serving."""

from __future__ import annotations

from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parent.parent.parent / "demo" / "gateway.yaml"
