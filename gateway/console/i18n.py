"""The console's two languages. Templates say ``_("English text")``; Russian comes from RU.

The language is the ``lang`` cookie set by the switch on every page, else the first of
Russian/English in ``Accept-Language``, else Russian (the seed's users). Messages from the core
(a refused password, a bad certificate) are shown as the CLI prints them, so an administrator
sees the same words in both places.
"""

from __future__ import annotations

from typing import Callable

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"

RU: dict[str, str] = {
    "gateway": "шлюз",
    "Bases": "Базы", "Users": "Пользователи", "Users and groups": "Пользователи и группы",
    "IP lists": "IP-списки", "IP lists and bans": "IP-списки и блокировки", "Events": "События",
    "Security events": "События безопасности", "Certificates": "Сертификаты", "Enrolment": "Подключение",
    "Device enrolment": "Подключение устройств", "Log out": "Выйти", "Log in": "Войти",
    "Console login": "Вход в консоль", "User name": "Имя пользователя", "Password": "Пароль",
    "Repeat the password": "Повторите пароль", "Name": "Имя", "URLs": "Адреса", "print": "печать",
    "on": "вкл", "off": "выкл", "yes": "да", "no": "нет", "Certificate": "Сертификат", "Back end": "Сервер",
    "reachable": "доступен", "until": "до", "days left": "дн. осталось", "No bases configured.": "Нет баз в конфигурации.",
    "Problems found by gateway check": "Проблемы (gateway check)", "No problems: every check passed.":
        "Проблем нет: все проверки пройдены.",
    "Groups": "Группы", "Role": "Роль", "Document types": "Типы документов", "Group": "Группа",
    "Barcode": "Штрихкод", "Actions": "Действия", "No groups.": "Нет групп.", "No users.": "Нет пользователей.",
    "Add a group": "Добавить группу", "Add": "Добавить", "Save": "Сохранить", "Remove": "Удалить",
    "comma-separated": "через запятую", "Add a user": "Добавить пользователя",
    "Accept a weak password": "Принять слабый пароль", "Reset password": "Сменить пароль",
    "Set barcode": "Задать штрихкод", "Remove barcode": "Удалить штрихкод", "Move": "Перевести",
    "Edit": "Изменить", "Description": "Описание",
    "List files": "Файлы списков", "File": "Файл", "Entries": "Записей", "Bad lines": "Плохих строк",
    "applies to": "действует для", "all bases": "всех баз", "View and edit": "Просмотр и правка",
    "Current bans": "Текущие блокировки", "Kind": "Что", "Who": "Кто", "Failures": "Неудачных входов",
    "Time left": "Осталось", "Lift": "Снять", "Nothing is refused right now.": "Сейчас никто не заблокирован.",
    "Lift a ban": "Снять блокировку", "address or user name": "адрес или имя пользователя",
    "address": "адрес", "user": "пользователь", "s": "с",
    "Line": "Строка", "Text": "Текст", "Error": "Ошибка", "file does not exist yet (an empty list)":
        "файла ещё нет (пустой список)",
    "encoding": "кодировка", "line ends": "концы строк",
    "The list has bad lines; they are ignored when the list applies. Save anyway?":
        "В списке есть плохие строки; при применении они пропускаются. Сохранить всё равно?",
    "Save anyway": "Сохранить всё равно", "Back to the lists": "К списку файлов",
    "Time (UTC)": "Время (UTC)", "Event": "Событие", "Base": "База", "Client": "Клиент", "Message": "Сообщение",
    "Filter": "Фильтр", "any": "любое", "No events match.": "Подходящих событий нет.", "Page": "Страница",
    "of": "из", "Newer": "Новее", "Older": "Старее",
    "Default certificate": "Сертификат по умолчанию", "Own certificate of base": "Собственный сертификат базы",
    "uses the default certificate": "использует сертификат по умолчанию",
    "Upload a certificate": "Загрузить сертификат", "for": "для",
    "default (bases without their own)": "по умолчанию (базы без своего)",
    "PFX / P12 file, or PEM certificate": "Файл PFX / P12 или сертификат PEM",
    "PEM private key (when not in the file above)": "Закрытый ключ PEM (если его нет в файле выше)",
    "PFX or key password": "Пароль PFX или ключа", "Upload and install": "Загрузить и установить",
    "Local CA": "Локальный ЦС", "Download": "Скачать",
    "No local CA: a certificate of your own is configured.": "Локального ЦС нет: настроен свой сертификат.",
    "Enrolment page": "Страница подключения",
    "Enrolment is off (enrolment: {enabled: true} turns it on).":
        "Страница подключения выключена (enrolment: {enabled: true} включает её).",
    "Done": "Готово", "Refused": "Отказано", "Language": "Язык",
    "Too many failed logins; try again in": "Слишком много неудачных входов; повторите через",
    "Wrong user name or password.": "Неверное имя пользователя или пароль.",
    "The console is for users of a group with the admin role.":
        "Консоль доступна только пользователям группы с ролью admin.",
    "Your session has ended; log in again.": "Сеанс завершён; войдите снова.",
    "The form has expired or came from another page (CSRF check failed); reload the page and try again.":
        "Форма устарела или пришла с другой страницы (проверка CSRF); обновите страницу и повторите.",
    "The request came from another site (Origin/Referer check failed).":
        "Запрос пришёл с другого сайта (проверка Origin/Referer).",
    "No such console page.": "Нет такой страницы консоли.",
    "The console could not build this page; see the gateway log.":
        "Консоль не смогла построить страницу; см. журнал шлюза.",
    "The user store is down; see /readyz and the gateway log.":
        "Хранилище пользователей недоступно; см. /readyz и журнал шлюза.",
    "Changes are made with the buttons of a page (POST); this address only shows.":
        "Изменения делаются кнопками на страницах (POST); этот адрес только показывает.",
    "the two passwords differ; nothing was changed": "пароли не совпадают; ничего не изменено",
    "the two barcodes differ; nothing was changed": "штрихкоды не совпадают; ничего не изменено",
    "New password": "Новый пароль", "New barcode": "Новый штрихкод", "Repeat": "Повторите",
    "to group": "в группу", "Logged in as": "Вход выполнен:", "Offline work": "Автономная работа",
}


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
    return lambda text: RU.get(text, text)
