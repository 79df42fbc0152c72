"""The console's two languages. Templates say ``_("English text")``; Russian comes from the
gettext catalogue shared with the CLI (gateway/utils/locale/ru.po, read by gateway/utils/messages.py).

The language is the ``lang`` cookie set by the switch on every page, else the first of
Russian/English in ``Accept-Language``, else Russian (the seed's users). Messages from the core
(a refused password, a bad certificate) go through the same catalogue as the CLI prints them,
so an administrator sees the same words in both places.
"""

from __future__ import annotations

from typing import Any, Callable

from gateway.utils import messages

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"

# Texts added here still resolve (pages written before the catalogue); new texts go into
# gateway/utils/locale/ru.po, which wins where both have one.
RU: dict[str, str] = {
    # The Devices page (client certificates).
    "Devices": "Устройства", "Devices (client certificates)": "Устройства (клиентские сертификаты)",
    "Device file issued": "Файл устройства выпущен",
    "Download it now and install it on the terminal (Settings → Security → Install a certificate). The file and "
    "its password are shown only on this page, never again.":
        "Скачайте его сейчас и установите на терминал (Настройки → Безопасность → Установить сертификат). "
        "Файл и пароль показываются только на этой странице, больше никогда.",
    "No devices enrolled.": "Нет зарегистрированных устройств.", "User": "Пользователь", "Serial": "Серийный номер",
    "Issued": "Выдан", "Expires": "Истекает", "Revoked": "Отозван", "Renew": "Перевыпустить", "Revoke": "Отозвать",
    "Enrol a device": "Зарегистрировать устройство",
    "User (optional: logs in only from this device)": "Пользователь (необязательно: входит только с этого устройства)",
    "Days": "Дней", "Old form for Android before 10": "Старая форма для Android до 10", "Enrol": "Зарегистрировать",
    "Last seen": "Последнее подключение", "One-time enrolment link": "Одноразовая ссылка для регистрации",
    "One-time link with a QR code instead of a file": "Одноразовая ссылка с QR-кодом вместо файла",
    "Code": "Код",
    "On the terminal, scan the QR code (or open the link), type the code, and install the downloaded file with the "
    "same code as its password. The link works once, until":
        "На терминале отсканируйте QR-код (или откройте ссылку), введите код и установите скачанный файл, указав "
        "тот же код как пароль. Ссылка работает один раз, до",
}

# The Bases page's form (gateway/console/bases.py) and the dashboard.
RU.update({
    "Dashboard": "Сводка", "Base settings": "Настройки базы", "Remove a base": "Удаление базы",
    "Add a base": "Добавить базу", "Edit the base": "Настройки базы", "Save and apply": "Сохранить и применить",
    "Cancel": "Отмена", "Reload": "Применение", "base '{id}' added.": "база «{id}» добавлена.",
    "base '{id}' changed.": "база «{id}» изменена.", "base '{id}' removed.": "база «{id}» удалена.", "applied": "применено", "No such base.": "Нет такой базы.",
    "no running gateway answered; the file is saved and applies at the next start":
        "работающий шлюз не ответил; файл сохранён и применится при следующем запуске",
    "Remove the base": "Удалить базу",
    "Its ports close after the reload; its folder and lists stay on disk.":
        "Её порты закроются после применения; папка и списки останутся на диске.",
    "Base code": "Код базы",
    "The base's code (GUID) from the legacy server's settings; the base's folder and events use it.":
        "Код базы (GUID) из настроек сервера; его используют папка базы и события.",
    "The name people see in the console, the events and the metrics.":
        "Наименование, которое видно в консоли, событиях и метриках.",
    "Data server port": "Порт сервера данных",
    "The public port devices connect to for data; every base needs its own port.":
        "Порт, к которому подключаются устройства; у каждой базы свой порт.",
    "Data back end": "Адрес сервера данных",
    "The legacy server's own data address, e.g. http://127.0.0.1:9706.":
        "Собственный адрес сервера данных, например http://127.0.0.1:9706.",
    "Print server used": "Сервер печати используется",
    "Turn on when the base uses the print server.": "Включите, если база использует сервер печати.",
    "Print server port": "Порт сервера печати", "The public port of the print server.": "Внешний порт сервера печати.",
    "Print back end": "Адрес сервера печати",
    "The legacy print server's address, e.g. http://127.0.0.1:9707.":
        "Адрес сервера печати, например http://127.0.0.1:9707.",
    "Use HTTPS": "Использовать https",
    "Devices connect over HTTPS with the certificate below; without it data travels in the clear.":
        "Устройства подключаются по HTTPS с сертификатом ниже; без него данные передаются в открытом виде.",
    "User authentication": "Аутентификация по пользователю",
    "Devices must log in as a user of the gateway.": "Устройства должны входить как пользователи шлюза.",
    "Whitelist only": "Только белый список",
    "Only addresses in the base's whitelist may connect.": "Подключаться могут только адреса из белого списка базы.",
    "Compress answers": "Сжимать ответы",
    "gzip answers for clients that accept it (slow mobile networks).":
        "Сжимать ответы gzip для клиентов, которые это принимают (медленные мобильные сети).",
    "Back up documents": "Резервные копии документов",
    "Keep a copy of every document uploaded to the base.": "Сохранять копию каждого документа, выгруженного в базу.",
    "Largest request body": "Наибольший размер запроса",
    "e.g. 100m; empty: the gateway's limits.client_max_body_size; 0: no limit.":
        "например 100m; пусто: limits.client_max_body_size шлюза; 0: без ограничения.",
    "The local CA's certificate (or the gateway's default), certificate files (imported), or one ordered by ACME for the names given.":
        "Сертификат локального ЦС (или сертификат шлюза по умолчанию), файлы сертификата (импортированные) или "
        "сертификат, заказанный по ACME для указанных имён.",
    "Certificate file": "Файл сертификата",
    "PEM or PFX file (cert import puts them in the state folder).":
        "Файл PEM или PFX (cert import кладёт их в папку состояния).",
    "Key file": "Файл ключа", "PEM private key, when it is not in the certificate file.":
        "Закрытый ключ PEM, если его нет в файле сертификата.",
    "ACME names": "Имена для ACME",
    "Comma-separated DNS names or addresses to order a certificate for.":
        "DNS-имена или адреса через запятую, для которых заказать сертификат.",
    "Local CA (the gateway's default certificate)": "Локальный ЦС (сертификат шлюза по умолчанию)",
    "Certificate files (imported)": "Файлы сертификата (импортированные)",
    "ACME (Let's Encrypt or the configured directory)": "ACME (Let's Encrypt или настроенный каталог)",
    "Per base, summed over the gateway's processes on this machine; updated every minute.":
        "По каждой базе, сумма по процессам шлюза на этой машине; обновляется раз в минуту.",
    "requests": "запросы", "refused": "отказано", "failed logins": "неудачные входы", "Last hour": "Последний час",
    "Last 24 hours": "Последние 24 часа", "now": "сейчас", "Requests and refusals": "Запросы и отказы",
    "p95 latency": "Задержка p95", "Open connections": "Открытые соединения", "open connections": "соединения",
    "IP list": "IP-список", "login": "вход", "throttle": "блокировка", "policy": "политика", "limits": "лимиты",
})


def choose_language(accept_language: str, cookie: str = "") -> str:
    if cookie in LANGUAGES:
        return cookie
    best: tuple[float, str] | None = None
    for item in accept_language.split(","):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and (best is None or quality > best[0]):
            best = (quality, primary)
    return best[1] if best else DEFAULT_LANGUAGE


def translator(language: str) -> Callable[[str], str]:
    if language == "en":
        return lambda text: text
    table = messages.catalogue(language)
    return lambda text: table.get(text) or RU.get(text, text)


def tr(language: str, text: str, **values: Any) -> str:
    """A text with ``{fields}``: translated first, then filled, so the words can move around the values."""
    translated = translator(language)(text)
    return translated.format(**values) if values else translated
