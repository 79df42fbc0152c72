"""Points OpenSSL at the gateway's own configuration file (gateway/ops/openssl.cnf) for the key
exchange groups of the Mozilla "intermediate" profile, which pyOpenSSL has no setter for.

OpenSSL reads ``OPENSSL_CONF`` once, when it is first initialised, so this must run before
anything imports ``cryptography`` or ``OpenSSL``: ``gateway.cli.main`` calls it first thing.
Processes the gateway starts later (workers) inherit the environment and so the same profile.
The host's own OpenSSL configuration is not touched: the variable lives in this process tree only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CONF_FILE = Path(__file__).with_name("openssl.cnf")
PROFILE_GROUPS = ("X25519", "prime256v1", "secp384r1")


def openssl_loaded() -> bool:
    """Has the OpenSSL inside `cryptography` (which pyOpenSSL uses) been initialised here?"""
    return "cryptography.hazmat.bindings._rust" in sys.modules


def use_gateway_openssl_conf() -> bool:
    """Set OPENSSL_CONF to the gateway's file before OpenSSL starts; returns whether it took
    effect. When OpenSSL is already loaded (the command was called from inside another Python
    program, e.g. a test) the environment is left alone: setting it then would change nothing
    here and only leak into that program's other child processes."""
    if openssl_loaded():
        return os.environ.get("OPENSSL_CONF") == str(CONF_FILE)
    os.environ["OPENSSL_CONF"] = str(CONF_FILE)
    return True
