"""The Bases page's changes: the seed's "base settings" dialog, field by field, into gateway.yaml.

A form is read into the values of one base item (gateway/config/edit_bases.py writes them,
keeping the file's comments), parsed by the same loader as the running gateway, its new ports
checked against the machine as ``gateway check`` does (the program holding a port is named),
then the running gateway is asked to reload (gateway/ops/reloadctl.py) and its answer, applied
or refused and why, is what the page shows. Pure of HTTP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import BaseConfig, ConfigError, GatewayConfig
from gateway.config.edit import EditError
from gateway.config.edit_bases import BaseValues, change_bases
from gateway.console.actions import ActionRefused, Form
from gateway.ops.health import gateway_ports, listen_problem, process_alive, read_run_files
from gateway.ops.reloadctl import write_request

FLAGS = ("https", "user_auth", "whitelist_only", "compress", "backups", "print_enabled")
CERT_CHOICES = ("default", "files", "acme")
# The form's fields (name → English label, help). The help texts follow the seed's dialog.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("id", "Base code", "The base's code (GUID) from the legacy server's settings; the base's folder and "
                        "events use it."),
    ("name", "Name", "The name people see in the console, the events and the metrics."),
    ("data_listen", "Data server port", "The public port devices connect to for data; every base needs "
                                        "its own port."),
    ("data_backend", "Data back end", "The legacy server's own data address, e.g. http://127.0.0.1:9706."),
    ("print_enabled", "Print server used", "Turn on when the base uses the print server."),
    ("print_listen", "Print server port", "The public port of the print server."),
    ("print_backend", "Print back end", "The legacy print server's address, e.g. http://127.0.0.1:9707."),
    ("https", "Use HTTPS", "Devices connect over HTTPS with the certificate below; without it data travels "
                           "in the clear."),
    ("user_auth", "User authentication", "Devices must log in as a user of the gateway."),
    ("whitelist_only", "Whitelist only", "Only addresses in the base's whitelist may connect."),
    ("compress", "Compress answers", "gzip answers for clients that accept it (slow mobile networks)."),
    ("backups", "Back up documents", "Keep a copy of every document uploaded to the base."),
    ("client_max_body_size", "Largest request body", "e.g. 100m; empty: the gateway's limits.client_max_body_size; "
                                                     "0: no limit."),
    ("cert_choice", "Certificate", "The local CA's certificate (or the gateway's default), certificate files "
                                   "(imported), or one ordered by ACME for the names given."),
    ("cert_file", "Certificate file", "PEM or PFX file (cert import puts them in the state folder)."),
    ("key_file", "Key file", "PEM private key, when it is not in the certificate file."),
    ("acme_names", "ACME names", "Comma-separated DNS names or addresses to order a certificate for."),
)


def form_of(base: BaseConfig) -> dict[str, str]:
    """The form's values for an existing base."""
    values = {"id": base.id, "name": base.name, "data_listen": str(base.data.listen),
              "data_backend": base.data.backend, "client_max_body_size": "" if base.client_max_body_size is None
              else str(base.client_max_body_size)}
    for flag in ("https", "user_auth", "whitelist_only", "compress", "backups"):
        values[flag] = "on" if getattr(base, flag) else ""
    if base.print is not None:
        values.update(print_enabled="on" if base.print.enabled else "", print_listen=str(base.print.listen or ""),
                      print_backend=base.print.backend)
    tls = base.tls
    if tls is not None and tls.acme:
        values.update(cert_choice="acme", acme_names=", ".join(tls.acme))
    elif tls is not None and tls.cert is not None:
        values.update(cert_choice="files", cert_file=str(tls.cert), key_file=str(tls.key or ""))
    else:
        values["cert_choice"] = "default"
    return values


def kept(form: Form) -> dict[str, str]:
    """What was typed, to show again after an error (the form has no secret field)."""
    return {name: form.get(name) for name, _label, _help in FIELDS}


def _port(form: Form, name: str, label: str) -> int:
    text = form.get(name).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ActionRefused(f"{label}: {text!r} is not a port number (1-65535)")
    return int(text)


def values_from(form: Form) -> BaseValues:
    base_id = form.required("id", "Base code")
    name = form.required("name", "Name")
    values: BaseValues = {"id": base_id, "name": name}
    for flag in ("https", "user_auth", "whitelist_only", "compress", "backups"):
        values[flag] = bool(form.get(flag))
    size = form.get("client_max_body_size").strip()
    values["client_max_body_size"] = size or None
    values["data"] = {"listen": _port(form, "data_listen", "Data server port"),
                      "backend": form.required("data_backend", "Data back end")}
    if form.get("print_enabled"):
        values["print"] = {"enabled": True, "listen": _port(form, "print_listen", "Print server port"),
                           "backend": form.required("print_backend", "Print back end")}
    elif form.get("print_listen").strip() or form.get("print_backend").strip():
        # Kept, switched off, like the seed's unticked "print server used".
        values["print"] = {"enabled": False, "listen": _port(form, "print_listen", "Print server port"),
                           "backend": form.required("print_backend", "Print back end")}
    else:
        values["print"] = None
    choice = form.get("cert_choice") or "default"
    if choice == "files":
        tls: dict[str, Any] = {"cert": form.required("cert_file", "Certificate file")}
        if form.get("key_file").strip():
            tls["key"] = form.get("key_file").strip()
        values["tls"] = tls
    elif choice == "acme":
        names = [n.strip() for n in form.get("acme_names").replace("\n", ",").split(",") if n.strip()]
        if not names:
            raise ActionRefused("ACME names: give at least one name")
        values["tls"] = {"acme": names}
    else:
        values["tls"] = None
    return values


@dataclass(frozen=True)
class ReloadAnswer:
    applied: bool
    text: str  # "applied", or the refusal's reason, or "no running gateway"


@dataclass(frozen=True)
class BaseChange:
    message: str  # to translate, then fill in {id}
    audit: str
    base: str
    reload: ReloadAnswer


def _ports(cfg: GatewayConfig) -> set[int]:
    return {e.listen for b in cfg.bases for _role, e in b.endpoints()}


def _check_new_ports(before: GatewayConfig) -> Any:
    held = _ports(before)

    def check(after: GatewayConfig) -> None:
        ours = gateway_ports(after.state_dir) | held
        for base in after.bases:
            for role, endpoint in base.endpoints():
                if endpoint.listen in held:
                    continue
                problem = listen_problem(after.listen_host, endpoint.listen, ours, after.source)
                if problem:
                    raise ActionRefused(f"{base.name} ({role}): {problem}")
    return check


def _describe(base: BaseConfig | None) -> dict[str, Any]:
    if base is None:
        return {}
    facts: dict[str, Any] = {"id": base.id, "name": base.name, "data": f"{base.data.listen}→{base.data.backend}",
                             "print": (f"{base.print.listen}→{base.print.backend}" if base.print and base.print.enabled
                                       else "off"),
                             "https": base.https, "user_auth": base.user_auth, "whitelist_only": base.whitelist_only,
                             "compress": base.compress, "backups": base.backups,
                             "client_max_body_size": base.client_max_body_size}
    tls = base.tls
    facts["certificate"] = ("acme " + ",".join(tls.acme) if tls and tls.acme else
                            str(tls.cert) if tls and tls.cert else "default")
    return facts


def _audit(what: str, before: BaseConfig | None, after: BaseConfig | None) -> str:
    old, new = _describe(before), _describe(after)
    if before is None:
        return f"{what}: " + ", ".join(f"{k}={v}" for k, v in new.items())
    if after is None:
        return f"{what}: was " + ", ".join(f"{k}={v}" for k, v in old.items())
    changed = [f"{k}: {old.get(k)} → {new.get(k)}" for k in new if old.get(k) != new.get(k)]
    return f"{what}: " + ("; ".join(changed) if changed else "nothing changed")


def save(cfg: GatewayConfig, original: str | None, form: Form, reload_timeout: float = 10.0) -> BaseChange:
    """Add (``original`` None) or change a base from the form; refuses with the parser's words."""
    values = values_from(form)
    if original is None and cfg.base_by_id(values["id"]) is not None:
        raise ActionRefused(f"a base with the code {values['id']!r} exists already")
    before_cfg, after_cfg = _write(cfg, original, values)
    before = before_cfg.base_by_id(original) if original else None
    after = after_cfg.base_by_id(values["id"])
    what = f"base {values['id']!r} " + ("added" if before is None else "changed")
    message = "base '{id}' added." if before is None else "base '{id}' changed."
    return BaseChange(message, _audit(what, before, after), values["id"], reload_gateway(cfg, reload_timeout))


def remove(cfg: GatewayConfig, base_id: str, reload_timeout: float = 10.0) -> BaseChange:
    if len(cfg.bases) == 1 and cfg.bases[0].id == base_id:
        raise ActionRefused("the last base cannot be removed: the gateway serves at least one")
    before_cfg, _after = _write(cfg, base_id, None)
    what = f"base {base_id!r} removed"
    return BaseChange("base '{id}' removed.", _audit(what, before_cfg.base_by_id(base_id), None), base_id,
                      reload_gateway(cfg, reload_timeout))


def _write(cfg: GatewayConfig, base_id: str | None, values: BaseValues | None) -> tuple[GatewayConfig, GatewayConfig]:
    try:
        return change_bases(Path(cfg.source), base_id, values, _check_new_ports(cfg))
    except ConfigError as e:
        raise ActionRefused(f"{e.key}: {e.problem}" if e.key else e.problem) from None
    except EditError as e:
        raise ActionRefused(str(e)) from None


def reload_gateway(cfg: GatewayConfig, timeout: float) -> ReloadAnswer:
    """Ask every running gateway of this state folder to reload and wait for their answers."""
    waiting = {info.pid for info in read_run_files(cfg.state_dir) if process_alive(info.pid) and not info.workers}
    if not waiting:
        return ReloadAnswer(False, "no running gateway answered; the file is saved and applies at the next start")
    request = write_request(cfg.state_dir)
    answers: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        time.sleep(0.2)
        for info in read_run_files(cfg.state_dir):
            if info.pid in waiting and info.last_reload and info.last_reload.get("request") == request:
                answers[info.pid] = info.last_reload
                waiting.discard(info.pid)
    refused = [str(a.get("message")) for a in answers.values() if not a.get("ok")]
    if refused:
        return ReloadAnswer(False, refused[0])
    if waiting:
        return ReloadAnswer(False, f"no answer within {timeout:g} s from pid {', '.join(map(str, sorted(waiting)))}")
    return ReloadAnswer(True, "applied")
