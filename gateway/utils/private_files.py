"""Writing a file only its owner can read: an account export holds argon2id and keyed hashes,
which deserve the same protection as the keys in the state folder.

POSIX: mode 0600 from the moment the file exists (the umask cannot widen it). Windows: modes mean
nothing there, so the file's ACL is cut down to the current user, named by SID (account names
are translated on localized Windows), before a byte of the secret is written.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.utils.files import atomic_write

OWNER_ONLY = 0o600

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=30, check=False)


def current_user_sid(run: Runner = _run) -> str:
    """The SID of the account running this process (`whoami /user`: its last CSV field)."""
    done = run(["whoami", "/user", "/fo", "csv", "/nh"])
    sid = done.stdout.strip().rsplit(",", 1)[-1].strip().strip('"') if done.returncode == 0 else ""
    if not sid.startswith("S-1-"):
        raise OSError(f"cannot tell which account runs this command (whoami /user answered {done.returncode})")
    return sid


def owner_only_acl_command(path: Path, sid: str) -> list[str]:
    """icacls: drop the inherited entries and every other grant, full control for ``sid`` only."""
    return ["icacls", str(path), "/inheritance:r", "/grant:r", f"*{sid}:F"]


def restrict_to_owner_on_windows(path: Path, run: Runner = _run) -> None:
    done = run(owner_only_acl_command(path, current_user_sid(run)))
    if done.returncode != 0:
        raise OSError(f"{path}: could not make the file readable by its owner only "
                      f"(icacls answered {done.returncode}: {(done.stdout + done.stderr).strip()[:200]})")


def write_private_text(path: Path, text: str, *, windows: bool | None = None, run: Runner = _run) -> None:
    """Replace ``path`` with ``text``, readable by the owner only; nothing is left behind on failure."""
    windows = os.name == "nt" if windows is None else windows
    atomic_write(
        path,
        text.encode("utf-8"),
        mode=OWNER_ONLY,
        before_write=(lambda temporary: restrict_to_owner_on_windows(temporary, run)) if windows else None,
    )
