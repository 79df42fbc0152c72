"""The reference pages (docs/reference/, both languages) against the code: every configuration key
the parser reads, every command and flag argparse accepts, every metric declared and every
security-event kind is on its page, and nothing on a page is missing from the code.

The truth comes from the code itself, so a key, flag, metric or event added without a line in the
reference fails here with the item and the page to add it to:
- config keys: the example configuration and the demo one are parsed while every ``_Reader`` the
  parser opens is recorded; each key it asked for (``used``) is a key it accepts;
- commands: the argparse parser ``gateway.cli.build_parser()`` walked, sub-commands included;
- metrics: the prometheus metric objects and metric families declared in gateway/ and addons/;
- events: ``SECURITY_EVENTS`` in gateway/ops/logsetup.py.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest
import yaml

import gateway.config as config_module
from gateway.cli import build_parser
from gateway.config import parse_config
from gateway.config.demo import DEMO_DEFAULT_TEXT
from gateway.config.reader import _Reader
from gateway.ops.logsetup import SECURITY_EVENTS

ROOT = Path(__file__).resolve().parents[3]
REFERENCE = ROOT / "docs" / "reference"
LANGUAGES = ("md", "en.md")
GLOBAL_FLAGS = {"-c", "--config", "--init", "-h", "--help"}


def _pages(stem: str) -> list[Path]:
    return [REFERENCE / f"{stem}.{suffix}" for suffix in LANGUAGES]


def _first_cells(lines: list[str]) -> list[str]:
    """The backticked names in the first column of the table rows among ``lines``."""
    names = []
    for line in lines:
        if not line.startswith("| `"):
            continue
        first = re.split(r"(?<!\\)\|", line)[1]  # `ADDRESS\|USER`: an escaped pipe stays in the cell
        names += [name.replace("\\|", "|") for name in re.findall(r"`([^`]+)`", first)]
    return names


def _sections(path: Path, level: str) -> dict[str, list[str]]:
    """The page cut at headings of ``level`` (``##`` or ``###``): heading text → its lines."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(level + " "):
            current = line[len(level) + 1:].strip()
            sections[current] = []
        else:
            sections[current].append(line)
    return sections


def _compare(page: Path, documented: set[str], real: set[str], what: str) -> list[str]:
    problems = [f"{page.relative_to(ROOT)}: {what} `{name}` is missing; add a row for it"
                for name in sorted(real - documented)]
    problems += [f"{page.relative_to(ROOT)}: {what} `{name}` does not exist in the code; remove or fix the row"
                 for name in sorted(documented - real)]
    return problems


# --- configuration keys --------------------------------------------------------------------------


# Branches the example configuration leaves off (a base's own certificate, a base's ACME names, one
# listener's own PROXY protocol): only their presence makes the parser look inside. The keys read
# there are still recorded from the parser, not listed here.
BRANCHES = """
bases:
  - id: own-certificate
    name: own certificate
    tls: {cert: a.pem, key: a.key, password_file: a.pass}
    data:  {listen: 8443, backend: "http://127.0.0.1:9706", proxy_protocol: {enabled: true, trusted: [127.0.0.1]}}
    print: {listen: 8444, backend: "http://127.0.0.1:9707", proxy_protocol: {enabled: true, trusted: [127.0.0.1]}}
  - id: acme-names
    name: acme names
    tls: {acme: [shop.example.org]}
    data:  {listen: 8445, backend: "http://127.0.0.1:9706"}
"""


def _keys_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> set[str]:
    readers: list[_Reader] = []
    original = _Reader.__init__

    def recording(self: _Reader, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        readers.append(self)

    monkeypatch.setattr(_Reader, "__init__", recording)
    for text in ((ROOT / "deploy" / "gateway.example.yaml").read_text(encoding="utf-8"), DEMO_DEFAULT_TEXT, BRANCHES):
        source = tmp_path / "gateway.yaml"
        source.write_text(text, encoding="utf-8")
        try:
            parse_config(yaml.safe_load(text), source)
        except config_module.ConfigError:
            pass  # a check across sections (ports, files); every reader ran before it
    def plain(path: str) -> str:
        return re.sub(r"\[\d+\]", "[]", path)

    sections = {plain(reader.path) for reader in readers}
    keys = {plain(reader.key(name)) for reader in readers for name in reader.used}
    return keys - sections


@pytest.mark.parametrize("page", _pages("config"), ids=lambda p: p.name)
def test_every_config_key_is_in_the_reference(page: Path, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    real = _keys_read(monkeypatch, tmp_path)
    assert len(real) > 50, real  # the recorder saw the parser at work
    documented = set(_first_cells(page.read_text(encoding="utf-8").splitlines()))
    assert not (problems := _compare(page, documented, real, "configuration key")), "\n".join(problems)


# --- commands and flags --------------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, prefix: str = "gateway") -> dict[str, set[str]]:
    """``gateway <command> [<sub-command>]`` → its flags and positional arguments (as METAVAR)."""
    found: dict[str, set[str]] = {}
    params: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_commands(sub, f"{prefix} {name}"))
        elif action.help == argparse.SUPPRESS:
            continue  # hidden from --help on purpose: the reference need not list it (see _hidden_flags)
        elif action.option_strings:
            params.update(s for s in action.option_strings if s not in GLOBAL_FLAGS)
        else:
            params.add(str(action.metavar or action.dest).upper())
    if prefix != "gateway" and not any(key.startswith(prefix + " ") for key in found):
        found[prefix] = params
    return found


def _hidden_flags(parser: argparse.ArgumentParser) -> set[str]:
    """Flags hidden from --help (a worker's internal --worker, a test's knob): the reference may
    name them or not, but they must exist."""
    hidden: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                hidden |= _hidden_flags(sub)
        elif action.help == argparse.SUPPRESS:
            hidden.update(action.option_strings)
    return hidden


@pytest.mark.parametrize("page", _pages("commands"), ids=lambda p: p.name)
def test_every_command_and_flag_is_in_the_reference(page: Path) -> None:
    real = _commands(build_parser())
    hidden = _hidden_flags(build_parser())
    documented = {}
    for heading, lines in _sections(page, "###").items():
        match = re.fullmatch(r"`(gateway [^`]+)`", heading)
        if match:
            documented[match.group(1)] = set(_first_cells(lines)) - hidden
    problems = _compare(page, set(documented), set(real), "command")
    for command in sorted(set(real) & set(documented)):
        problems += _compare(page, documented[command], real[command], f"`{command}` parameter")
    global_rows = set(_first_cells(next(lines for heading, lines in _sections(page, "##").items()
                                        if heading in ("Global flags", "Общие параметры"))))
    problems += _compare(page, global_rows, {"-c", "--config", "--init"}, "global flag")
    assert not problems, "\n".join(problems)


# --- metrics -------------------------------------------------------------------------------------

_COUNTERS = {"Counter", "CounterMetricFamily"}
_DECLARATIONS = _COUNTERS | {"Gauge", "Histogram", "Summary", "GaugeMetricFamily", "HistogramMetricFamily",
                             "SummaryMetricFamily", "Metric"}


def _declared_metrics() -> set[str]:
    names = set()
    for path in [*(ROOT / "gateway").rglob("*.py"), *(ROOT / "addons").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            first = node.args[0]
            if func not in _DECLARATIONS or not isinstance(first, ast.Constant) or not isinstance(first.value, str):
                continue
            kind = node.args[2].value if func == "Metric" and len(node.args) > 2 and isinstance(
                node.args[2], ast.Constant) else ""
            counter = func in _COUNTERS or kind == "counter"
            names.add(first.value + ("_total" if counter else ""))
    return names


@pytest.mark.parametrize("page", _pages("metrics-events"), ids=lambda p: p.name)
def test_every_metric_is_in_the_reference(page: Path) -> None:
    real = _declared_metrics()
    assert "gateway_requests_total" in real and len(real) > 10, real
    metrics = next(lines for heading, lines in _sections(page, "##").items() if heading in ("Metrics", "Метрики"))
    documented = set(_first_cells(metrics))
    assert not (problems := _compare(page, documented, real, "metric")), "\n".join(problems)


@pytest.mark.parametrize("page", _pages("metrics-events"), ids=lambda p: p.name)
def test_every_security_event_is_in_the_reference(page: Path) -> None:
    events = next(lines for heading, lines in _sections(page, "##").items()
                  if heading in ("Security events", "События безопасности"))
    documented = set(_first_cells(events))
    problems = _compare(page, documented, set(SECURITY_EVENTS), "security event (SECURITY_EVENTS)")
    assert not problems, "\n".join(problems)
