"""The enrolment listener's one-time device links (``/device/TOKEN``): a form asking for the
code, then the device's PKCS#12 file. Served only over TLS; every wrong code, and every link
that is unknown, used or expired, is a failure of the client's address in the login throttle,
so codes and links cannot be guessed faster than passwords.
"""

from __future__ import annotations

import asyncio
import html
import logging
import urllib.parse
from pathlib import Path

from gateway.auth.throttle import Throttle
from gateway.certs.device_links import LINK_PATH, LinkRefused, link_exists, redeem
from gateway.certs.enrolment import COMMON_HEADERS, HTML_TYPE, Answer, encode
from gateway.store import Store

logger = logging.getLogger("gateway.devices")


def is_link_path(path: str) -> bool:
    return path.startswith(LINK_PATH)


class DeviceLinks:
    def __init__(self, state_dir: Path, store: Store, throttle: Throttle) -> None:
        self._state_dir, self._store, self._throttle = state_dir, store, throttle

    async def respond(self, method: str, path: str, body: bytes, peer: str, tls: bool) -> bytes:
        if not tls:
            return encode(_page(403, "Forbidden", "Откройте ссылку по HTTPS / open this link over HTTPS."))
        token = path[len(LINK_PATH):]
        verdict = await asyncio.to_thread(self._throttle.check_ip, peer)
        if verdict.blocked:
            return encode(_page(429, "Too Many Requests", "Слишком много неверных попыток; подождите / too many "
                                                          "failed attempts; wait and try again.",
                                extra={"Retry-After": verdict.retry_after_header}))
        if method == "GET":
            if await asyncio.to_thread(link_exists, self._store, token):
                return encode(_page(200, "OK", "", form=True))
            await self._failed(peer, "unknown, used or expired link")
            return encode(_page(410, "Gone", "Ссылка недействительна: уже использована или истекла. Попросите "
                                             "новую / this link is used or expired; ask for a new one."))
        if method != "POST":
            return encode(_page(405, "Method Not Allowed", "GET or POST", extra={"Allow": "GET, POST"}))
        code = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("code", [""])[0]
        try:
            issued = await asyncio.to_thread(redeem, self._state_dir, self._store, token, code)
        except LinkRefused as e:
            await self._failed(peer, str(e))
            if e.gone:
                return encode(_page(410, "Gone", "Ссылка недействительна: уже использована или истекла / "
                                                 "this link is used or expired; ask for a new one."))
            return encode(_page(403, "Forbidden", "Неверный код / wrong code.", form=True))
        except Exception as e:  # e.g. the name was enrolled another way meanwhile: the link is spent
            logger.error("%s: issuing a device file by its one-time link failed: %s", peer, e,
                         extra={"event": "device-link-failed", "client": peer})
            return encode(_page(500, "Internal Server Error", "Сертификат не выпущен; попросите новую ссылку / "
                                                              "the certificate was not issued; ask for a new link."))
        logger.info("%s: device %s enrolled by its one-time link (serial %s)", peer, issued.device.name,
                    issued.device.serial, extra={"event": "device-link-used", "target": issued.device.name,
                                                 "client": peer})
        headers = {"Content-Type": "application/x-pkcs12", "Cache-Control": "no-store",
                   "Content-Disposition": f'attachment; filename="{issued.device.name}.p12"', **COMMON_HEADERS}
        return encode(Answer(200, "OK", headers, issued.p12))

    async def _failed(self, peer: str, why: str) -> None:
        await asyncio.to_thread(self._throttle.record_failure, peer)
        logger.warning("%s: device enrolment link refused: %s", peer, why,
                       extra={"event": "device-link-failed", "client": peer})


def _page(status: int, reason: str, message: str, form: bool = False,
          extra: dict[str, str] | None = None) -> Answer:
    ask = ("""<form method="post"><label>Код с экрана администратора / code from the administrator's screen
<input name="code" id="code" autocomplete="off" autocapitalize="none" required></label>
<button>Получить сертификат / get the certificate</button></form>
<p>Пароль файла — этот же код / the file's password is this same code.</p>""" if form else "")
    page = f"""<!doctype html><html lang="ru"><head><meta charset="utf-8"><meta name="viewport"
content="width=device-width"><title>Сертификат устройства / Device certificate</title>
<style>body{{font-family:sans-serif;margin:1em;max-width:40em}}input,button{{font-size:1.3em}}</style></head><body>
<h1>Сертификат устройства / Device certificate</h1><p>{html.escape(message)}</p>{ask}</body></html>"""
    headers = {"Content-Type": HTML_TYPE, "Cache-Control": "no-store", **COMMON_HEADERS, **(extra or {})}
    return Answer(status, reason, headers, page.encode("utf-8"))
