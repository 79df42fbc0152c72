"""Issue 25 point 3: every `gateway …` command a guide shows (docs/guides/*.md, both languages) is
run against a real gateway, the way the README's commands were checked by hand.

The commands are read from the guides' code blocks, so a command added to a guide is run by
default. A line is not run only when a rule below says why: a synopsis (placeholders such as FILE,
ADDRESS), or a line in SKIPPED (Windows, systemd, destructive, needs a public CA, starts another
gateway). Optional parts in brackets (`[--json]`) are dropped; `-c FILE`, `.venv/bin/`, `sudo -u …`
and /opt paths are replaced by this test's gateway and configuration. Each guide's commands run in
the guide's order on one gateway (the Russian page, then the English lines the Russian one does
not have), each expecting 0 unless EXPECTED says otherwise and why.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import RunningGateway, Standin, _env, base_entry, free_port, gateway_config

GUIDES = Path(__file__).resolve().parents[2] / "docs" / "guides"
# (a part of the line as the guide writes it, comment included) → why it is not run here
SKIPPED = {
    "C:\\": "a Windows path",
    "sudo -u tls-gateway": "the systemd install's account and folders (deploy/gateway.service)",
    "--new-ca": "destructive: a new local CA makes every device enrol again",
    "cert import issued.crt": "needs a certificate a public CA issued for the request",
    "cert acme renew": "needs a public ACME CA (tests/e2e/test_acme_pebble.py runs it against Pebble)",
    "gateway run": "starts a second gateway on the ports this test's gateway holds",
    "after a mistake in the file": "a transcript of a refused reload (tests/e2e/test_operator_small.py)",
    "a valid file the running gateway cannot apply": "a transcript of a refused reload",
    "ошибка в файле": "a transcript of a refused reload (tests/e2e/test_operator_small.py)",
    "шлюз не может его применить": "a transcript of a refused reload",
}
# (a part of the line) → the exit code the guide's order leads to, and why
EXPECTED: dict[str, tuple[int, str]] = {
    "cert acme status": (2, "(a configuration error: this gateway has no ACME CA, so acme.enabled is off)"),
    "--group 1 --barcode": (1, "(the guide's alternative to the line above: the user exists by then)"),
    'user move Иванов --group "Учёт"': (1, "(the guide removed the group 'Учёт' a few lines above)"),
}
PLACEHOLDER = re.compile(r"^(FILE|ADDRESS|ID|NAME|KEYFILE|SECONDS|GROUP|USER|ID\|NAME)$")
GATEWAY = re.compile(r"^(?:\$\s+)?(?:sudo\s+-u\s+\S+\s+)?(?:\S*/)?gateway(?:\.exe)?(?=\s|$)")


def secrets(n: int) -> str:
    """What a person types at the prompts: a password twice, then a barcode twice; unique per
    command (the gateway refuses a password already in use)."""
    return f"Sklad-Guide-{n}-Secret\n" * 2 + f"46{n:011d}\n" * 2


def code_lines(page: Path) -> list[str]:
    """The `gateway …` lines of the page's code blocks (fenced or indented), in order."""
    lines, fenced = [], False
    for raw in page.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if (fenced or raw.startswith("    ")) and GATEWAY.match(raw.strip()):
            lines.append(raw.strip())
    return lines


def guide_commands() -> list[tuple[str, list[tuple[str, str]]]]:
    """Per guide: the Russian page's lines, then the English page's lines it lacks (its own
    translations, such as another --org), each with its language."""
    result = []
    for russian in sorted(p for p in GUIDES.glob("*.md") if not p.name.endswith(".en.md")):
        lines = [("ru", line) for line in code_lines(russian)]
        commands = {_command(line) for _, line in lines}
        lines += [("en", line) for line in code_lines(russian.with_name(russian.stem + ".en.md"))
                  if _command(line) not in commands]
        if lines:
            result.append((russian.stem, lines))
    return result


def _command(line: str) -> str:
    """The line without its comment: the two languages' pages differ only there."""
    return line.split("  #", 1)[0].strip()


def runnable(line: str) -> tuple[list[str] | None, str]:
    """The arguments to run (after `gateway`), or None and the reason."""
    for part, reason in SKIPPED.items():
        if part in line:
            return None, reason
    args = shlex.split(GATEWAY.sub("", line), comments=True)
    args = [a for a in args if not (a.startswith("[") or a.endswith("]"))]  # optional parts of a synopsis
    if any(PLACEHOLDER.match(a) for a in args):
        return None, "a synopsis: its placeholders are described under it"
    while "-c" in args:
        i = args.index("-c")
        del args[i:i + 2]
    return args, ""


def test_the_skip_rules_leave_the_guides_commands_to_run() -> None:
    every = [line for page in GUIDES.glob("*.md") for line in code_lines(page)]
    ran = [line for _, lines in guide_commands() for _, line in lines if runnable(line)[0] is not None]
    assert len(every) > 40 and len(ran) > 30, (len(every), len(ran))
    for part in [*SKIPPED, *EXPECTED]:
        assert any(part in line for line in every), f"the rule for {part!r} matches no guide line any more"


def test_every_guide_command_runs_against_a_real_gateway(standin: Standin, tmp_path: Path,
                                                         gateway_factory: object) -> None:
    admin = free_port()
    config = gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", "Склад 1")],
                            admin={"enabled": True, "host": "127.0.0.1", "listen": admin})
    gw: RunningGateway = gateway_factory(config)  # type: ignore[operator]
    # Files a guide writes (`--out req`, users.yaml) go to a folder per language: the English
    # page repeats the Russian one's commands with its own words.
    folders = {language: gw.directory / language for language in ("ru", "en")}
    for folder in folders.values():
        folder.mkdir()
    failures, started, typed = [], time.monotonic(), itertools.count(1)
    for guide, lines in guide_commands():
        for language, line in lines:
            args, _ = runnable(line)
            if args is None:
                continue
            code, why = next(((c, w) for part, (c, w) in EXPECTED.items() if part in line), (0, ""))
            # A session of its own: no terminal, so a password prompt reads standard input.
            done = subprocess.run([sys.executable, "-m", "gateway", "-c", str(gw.config_path), *args],
                                  input=secrets(next(typed)), capture_output=True, text=True, timeout=30,
                                  cwd=folders[language],
                                  env=_env(), start_new_session=True)
            if done.returncode != code:
                failures.append(f"{guide}: `{line}` exited {done.returncode}, expected {code} {why}\n"
                                f"    {(done.stderr or done.stdout).strip()[-400:]}")
    assert not failures, "\n".join(failures)
    assert time.monotonic() - started < 120
