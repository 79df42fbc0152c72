"""Issue 12 point 5: the Windows service files agree with the CLI and keep state under ProgramData."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path, PureWindowsPath

import pytest
import yaml

from gateway.cli import build_parser
from gateway.config import parse_config

WINDOWS = Path(__file__).resolve().parents[3] / "deploy" / "windows"
DATA_DIR = PureWindowsPath(r"C:\ProgramData\TlsGateway")


def _gateway_args(command_line: str) -> list[str]:
    """The arguments after `-m gateway` (posix=False keeps Windows back-slashes)."""
    words = [w.strip('"') for w in shlex.split(command_line, posix=False)]
    assert words[:2] == ["-m", "gateway"], words
    return words[2:]


def test_winsw_service_runs_the_gateway_with_the_programdata_config() -> None:
    service = ET.parse(WINDOWS / "tls-gateway.xml").getroot()
    assert service.tag == "service" and service.findtext("id") == "tls-gateway"
    executable = PureWindowsPath(service.findtext("executable") or "")
    assert executable.name == "python.exe" and executable.parent.name == "Scripts"
    args = build_parser().parse_args(_gateway_args(service.findtext("arguments") or ""))
    assert args.command == "run"
    assert PureWindowsPath(str(args.config)) == DATA_DIR / "gateway.yaml"
    assert PureWindowsPath(service.findtext("logpath") or "") == DATA_DIR / "logs"
    assert PureWindowsPath(service.findtext("workingdirectory") or "") == DATA_DIR
    assert service.find("onfailure").get("action") == "restart"  # type: ignore[union-attr]


def test_example_config_parses_and_keeps_state_and_logs_under_programdata() -> None:
    raw = yaml.safe_load((WINDOWS / "gateway.yaml").read_text(encoding="utf-8"))
    assert PureWindowsPath(raw["state_dir"]) == DATA_DIR / "state"
    assert PureWindowsPath(raw["log"]["file"]).parent == DATA_DIR / "logs"
    cfg = parse_config(raw, Path("/tmp/gateway.yaml"))
    for base in cfg.bases:  # the legacy server is bound to loopback: nothing reaches it around the gateway
        for _, endpoint in base.endpoints():
            assert endpoint.backend_host == "127.0.0.1"


def test_install_script_matches_the_service_and_the_cli() -> None:
    script = (WINDOWS / "install-service.ps1").read_text(encoding="utf-8")
    assert re.search(r'\$DataDir = "C:\\ProgramData\\TlsGateway"', script)
    assert re.search(r'\$InstallDir = "C:\\Program Files\\TlsGateway"', script)
    service = ET.parse(WINDOWS / "tls-gateway.xml").getroot()
    assert PureWindowsPath(service.findtext("executable") or "") == PureWindowsPath(
        r"C:\Program Files\TlsGateway") / "venv" / "Scripts" / "python.exe"
    # Every gateway command the script runs is one the CLI accepts.
    calls = re.findall(r"& \$VenvPython -m gateway (.+)", script)
    assert {c.split()[-1] for c in calls} >= {"check", "status"}
    parser = build_parser()
    for call in calls:
        parsed = parser.parse_args(call.replace("$Config", "gateway.yaml").split())
        assert parsed.func is not None
    assert "netsh advfirewall firewall add rule" in script and "dir=in action=$Action protocol=TCP" in script
    assert 'Set-FirewallRule $BasesRule "allow" $Ports' in script
    assert 'Set-FirewallRule $LegacyRule "block" $BackendPorts' in script
    assert '$Wrapper = Join-Path $InstallDir "$ServiceId.exe"' in script and "& $Wrapper install" in script
    uninstall = (WINDOWS / "uninstall-service.ps1").read_text(encoding="utf-8")
    assert "-RemoveData" in uninstall or "$RemoveData" in uninstall


# Issue 23 points 1-4. No PowerShell runs here: `pwsh` is not packaged by Debian or PyPI, the
# registries CI may use. So the scripts are read as text by a small PowerShell-aware reader:
# brackets balance, every program they run has its result checked, accounts are named by SID.

SCRIPTS = ("install-service.ps1", "uninstall-service.ps1")
# Programs whose failure PowerShell does not notice by itself: a non-zero exit code is not an error.
_NATIVE = re.compile(r"(?<![\w.-])(icacls|netsh|sc(?:\.exe)?|New-Service|Start-Process)(?![\w-])|&\s*\$(?!Command\b)\w+",
                     re.IGNORECASE)
_KNOWN_SIDS = {"S-1-5-32-544": "Administrators", "S-1-5-18": "SYSTEM", "S-1-5-19": "LocalService"}


def _without_strings_and_comments(text: str) -> str:
    """The script with comments removed and the inside of every string blanked (quotes kept), so
    brackets and command names are only counted where PowerShell reads them as code."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("<#", i):
            end = text.find("#>", i + 2)
            assert end != -1, "a <# block comment #> is not closed"
            out.append("\n" * text.count("\n", i, end))
            i = end + 2
        elif c == "#":
            end = text.find("\n", i)
            i = n if end == -1 else end
        elif text.startswith(("@'", '@"'), i) and text[i + 2:i + 3] in ("\n", "\r"):
            closing = "\n" + text[i + 1] + "@"
            end = text.find(closing, i + 2)
            assert end != -1, "a here-string is not closed"
            out.append("@''" + "\n" * text.count("\n", i, end + 1))
            i = end + 3
        elif c in "\"'":
            j = i + 1
            while True:
                assert j < n, f"a string opened with {c} near {text[i:i + 40]!r} is not closed"
                if c == '"' and text[j] == "`":
                    j += 2
                    continue
                if text[j] == c:
                    if text[j + 1:j + 2] == c:  # a doubled quote is the quote itself
                        j += 2
                        continue
                    break
                j += 1
            out.append(c + "\n" * text.count("\n", i, j) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _logical_lines(code: str) -> list[str]:
    """Lines of code with backtick continuations joined."""
    return [line.strip() for line in re.sub(r"`\r?\n", " ", code).splitlines() if line.strip()]


def _check_brackets(code: str) -> None:
    pairs, stack = {")": "(", "}": "{", "]": "["}, []
    for number, line in enumerate(code.splitlines(), 1):
        for c in line:
            if c in "({[":
                stack.append((c, number))
            elif c in ")}]":
                assert stack and stack[-1][0] == pairs[c], f"line {number}: {c} closes nothing that is open"
                stack.pop()
    assert not stack, f"line {stack[-1][1]}: {stack[-1][0]} is never closed"


def unchecked_native_calls(script: str) -> list[str]:
    """Every line running a program whose exit code nothing looks at. A call is checked when it
    runs through Invoke-Native (which throws on a bad exit code), when the next line tests
    $LASTEXITCODE, or for cmdlets, when failure is made to stop the script."""
    lines = _logical_lines(_without_strings_and_comments(script))
    problems = []
    for i, line in enumerate(lines):
        if line.startswith("function Invoke-Native"):
            continue
        for match in _NATIVE.finditer(line):
            command = match.group(0)
            if command.lower() == "sc":
                problems.append(f"{line}: `sc` is Set-Content in PowerShell; the service tool is sc.exe")
            elif command.lower() == "new-service":
                if "-ErrorAction Stop" not in line:
                    problems.append(f"{line}: New-Service without -ErrorAction Stop")
            elif command.lower() == "start-process":
                following = lines[i + 1] if i + 1 < len(lines) else ""
                if not ("-Wait" in line and "-PassThru" in line and ".ExitCode" in following):
                    problems.append(f"{line}: Start-Process without -Wait -PassThru and an ExitCode check")
            elif "Invoke-Native" in line[:match.start()]:
                continue
            else:
                following = lines[i + 1] if i + 1 < len(lines) else ""
                if "$LASTEXITCODE" not in following:
                    problems.append(f"{line}: nothing checks whether {command} succeeded")
    return problems


def _invoke_native_body(script: str) -> str:
    match = re.search(r"function Invoke-Native \{(.*?)\n\}", script, re.DOTALL)
    assert match, "the script has no Invoke-Native function"
    return match.group(1)


def test_the_checker_catches_what_it_looks_for() -> None:
    """The reader above is the only check the scripts get; it must fail on the defects of issue 23."""
    assert unchecked_native_calls('icacls $DataDir /grant "Administrators:F" | Out-Null\n')
    assert unchecked_native_calls("sc qc tls-gateway\n")
    assert unchecked_native_calls('netsh advfirewall firewall add rule name="x" `\n  dir=in\nWrite-Host ok\n')
    assert unchecked_native_calls("& $Wrapper install\n& $Wrapper start\n")
    assert unchecked_native_calls("Start-Process msiexec -ArgumentList '/i x.msi'\n")
    assert unchecked_native_calls("New-Service -Name x -BinaryPathName y\n")
    assert not unchecked_native_calls('Invoke-Native "x" { icacls $DataDir /grant "*S-1-5-18:F" }\n')
    assert not unchecked_native_calls("& $VenvPython -m gateway check\nif ($LASTEXITCODE -ne 0) { throw 'x' }\n")
    assert not unchecked_native_calls("# icacls in a comment\nWrite-Host 'netsh in a string'\n")
    with pytest.raises(AssertionError, match="never closed"):
        _check_brackets(_without_strings_and_comments("if ($a) { Write-Host '}'\n"))
    with pytest.raises(AssertionError, match="not closed"):
        _without_strings_and_comments('Write-Host "unterminated\n')


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_program_the_scripts_run_is_checked(name: str) -> None:
    script = (WINDOWS / name).read_text(encoding="utf-8")
    code = _without_strings_and_comments(script)
    _check_brackets(code)
    assert re.search(r'^\$ErrorActionPreference = "Stop"$', script, re.MULTILINE)
    assert unchecked_native_calls(script) == []
    body = _invoke_native_body(script)
    assert "$LASTEXITCODE" in body and "throw" in body
    # Every program in the script is found by the reader: nothing hides behind a name it does not know.
    ran = {m.group(0).lower() for line in _logical_lines(code) for m in _NATIVE.finditer(line)}
    assert {"netsh", "sc.exe"} <= ran


def test_accounts_are_named_by_sid_never_by_their_english_name() -> None:
    script = (WINDOWS / "install-service.ps1").read_text(encoding="utf-8")
    sids = dict(re.findall(r'^\$(Sid\w+) = "(S-1-[\d-]+)"$', script, re.MULTILINE))
    assert set(sids.values()) == set(_KNOWN_SIDS)
    icacls = [line for line in _logical_lines(script) if re.search(r"\{\s*icacls ", line)]
    grants = [line for line in icacls if "/grant" in line]
    assert len(grants) >= 2  # the data folder, the base folders
    for line in icacls:
        names = re.sub(r"\$\{Sid\w+\}", "", line)
        assert not re.search(r"(?i)administrators|\bsystem:|local ?service:|users:|everyone", names), line
    for line in grants:
        arguments = line.split("{ icacls", 1)[1]
        aces = [text for text in re.findall(r'"([^"]*)"', arguments) if ":" in text]
        assert aces or "/grant $ace" in arguments, line  # $ace: built above from the same SID variables
        for text in aces:
            assert text.startswith("*${Sid") or text.startswith("*S-1-"), f"{line}: {text} is not a SID"
            if text.startswith("*${"):
                assert text[3:text.index("}")] in sids, text
    built = re.findall(r'\$ace = if .*', script)
    assert built and "${SidLocalService}" in built[0] and "Users" not in built[0]
    data_acl = next(line for line in grants if "/inheritance:r" in line)
    assert all(f"${{{v}}}" in data_acl for v in sids), "the data folder names all three accounts"
    # The ACL is read back and every account in it must be one of the three.
    assert re.search(r"Test-OnlyAccounts \$DataDir @\(\$SidAdministrators, \$SidSystem, \$SidLocalService\)", script)
    assert "AreAccessRulesProtected" in script and "SecurityIdentifier" in script
    assert re.search(r'Invoke-Native "reading the permissions of \$DataDir" \{ icacls \$DataDir \}', script)


def test_the_service_account_is_winsw_v3s_form_and_checked_after_install() -> None:
    service = ET.parse(WINDOWS / "tls-gateway.xml").getroot()
    account = service.find("serviceaccount")
    assert account is not None
    assert [child.tag for child in account] == ["username"]  # v2's <domain>/<user> would be ignored by v3
    assert account.findtext("username") == r"NT AUTHORITY\LocalService"
    assert "v3" in (WINDOWS / "tls-gateway.xml").read_text(encoding="utf-8")
    script = (WINDOWS / "install-service.ps1").read_text(encoding="utf-8")
    assert re.search(r'^\$ServiceAccount = "NT AUTHORITY\\LocalService"$', script, re.MULTILINE)
    assert "& $WinSW --version" in script and "v?3\\." in script  # a v2 WinSW is refused
    lines = _logical_lines(_without_strings_and_comments(script))
    qc = next(i for i, line in enumerate(lines) if "sc.exe qc" in line)
    refuse = next(i for i, line in enumerate(lines) if "-ieq" in line and "$startName" in line)
    start = next(i for i, line in enumerate(lines) if "& $Wrapper start" in line)
    install = next(i for i, line in enumerate(lines) if "& $Wrapper install" in line)
    assert install < qc < refuse < start, "the account is checked after install and before the service starts"
    assert "SERVICE_START_NAME" in script and '"LocalSystem"' in script
    assert "throw" in lines[refuse + 1]


def test_install_stops_after_the_example_and_is_safe_to_run_again() -> None:
    script = (WINDOWS / "install-service.ps1").read_text(encoding="utf-8")
    lines = _logical_lines(_without_strings_and_comments(script))
    wrote = next(i for i, line in enumerate(lines) if line.startswith("Copy-WithFolders") and "$Config" in line)
    assert "if (-not (Test-Path $Config))" in lines[wrote - 1]
    exit_at = next(i for i in range(wrote, len(lines)) if lines[i] == "exit 0")
    assert lines[exit_at + 1] == "}"
    first_service_step = min(i for i, line in enumerate(lines) if "& $Wrapper" in line or "$Wrapper -Force" in line)
    assert exit_at < first_service_step
    check = next(i for i, line in enumerate(lines) if line.endswith("-c $Config check"))
    assert exit_at < check < first_service_step
    # An existing service is updated (WinSW v3 `refresh`), not installed a second time.
    assert re.search(r"if \(\$serviceExists\) \{\s*Invoke-Native [^\n]*& \$Wrapper refresh", script)
    assert re.search(r"\} else \{\s*Invoke-Native [^\n]*& \$Wrapper install", script)
    # Firewall rules: looked up, deleted when there, then added: never two of the same name.
    body = re.search(r"function Set-FirewallRule\b.*?\n\}", script, re.DOTALL).group(0)  # type: ignore[union-attr]
    show, delete, add = (body.index(f"firewall {verb} rule") for verb in ("show", "delete", "add"))
    assert show < delete < add and "-Allowed 0, 1" in body
    assert "netsh advfirewall firewall add rule" not in script.replace(body, "")
    rules = re.findall(r'^\$(\w+Rule) = "([^"]+)"$', script, re.MULTILINE)
    assert len(rules) == 2
    for variable, _ in rules:
        assert f"Set-FirewallRule ${variable} " in script
    uninstall = (WINDOWS / "uninstall-service.ps1").read_text(encoding="utf-8")
    for _, rule in rules:
        assert f'"{rule}"' in uninstall
    assert "firewall delete rule" in uninstall and "-Allowed 0, 1" in uninstall
    # The gateway goes into the venv as a copy with its runtime dependencies only.
    pip = next(line for line in lines if "pip install" in line and "$Repo" in line)
    assert "--upgrade" in pip and "-e " not in pip and "[test]" not in pip


def test_the_base_folder_query_in_the_install_script_runs(tmp_path: Path) -> None:
    """The script asks the installed gateway which folders the service must reach; run that
    question against a configuration here, so a renamed config API breaks this test, not an install."""
    script = (WINDOWS / "install-service.ps1").read_text(encoding="utf-8")
    query = re.search(r"\$folderQuery = @'\r?\n(.*?)\r?\n'@", script, re.DOTALL).group(1)  # type: ignore[union-attr]
    config = tmp_path / "gateway.yaml"
    config.write_text("state_dir: ./state\nip_lists:\n  whitelist: [./extra-white.dat]\n"
                      "bases:\n  - id: shop15\n    name: Shop 15\n    folder: ./bases/shop15\n    https: false\n"
                      "    data: {listen: 18080, backend: 'http://127.0.0.1:18081'}\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", query, str(config)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    base = (tmp_path / "bases" / "shop15").resolve()
    assert done.stdout.splitlines() == [f"read {base}", f"modify {base / 'Server'}", f"modify {base / 'backups'}",
                                        f"read {(tmp_path / 'extra-white.dat').resolve()}"]
    grants = re.search(r"foreach \(\$line in \$grants\) \{.*?\n\}", script, re.DOTALL).group(0)  # type: ignore[union-attr]
    assert '$right, $path = $line -split " ", 2' in grants and "icacls $path /grant $ace" in grants
