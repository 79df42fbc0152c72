import base64

import pytest

from gateway.auth.credentials import BasicCredentials, CredentialError, MAX_AUTHORIZATION_LENGTH, parse_authorization


def b64(text: str, encoding: str = "utf-8") -> str:
    return base64.b64encode(text.encode(encoding)).decode("ascii")


@pytest.mark.parametrize("header, login, secret", [
    (f"Basic {b64('admin:Secret123')}", "admin", "Secret123"),
    (f"basic {b64('admin:Secret123')}", "admin", "Secret123"),
    (f"BASIC   {b64('admin:Secret123')}  ", "admin", "Secret123"),
    (f"Basic {b64(':Secret123')}", "", "Secret123"),  # password-only (terminals)
    (f"Basic {b64('Иванов:Пароль123')}", "Иванов", "Пароль123"),
    (f"Basic {b64('Иванов:Пароль123', 'cp1251')}", "Иванов", "Пароль123"),  # legacy Russian clients
    (f"Basic {b64('admin:pa:ss')}", "admin", "pa:ss"),  # the password may contain ':'
    (f"Basic {b64('admin:Secret123').rstrip('=')}", "admin", "Secret123"),  # padding dropped
    ("Basic admin:Secret123", "admin", "Secret123"),  # unencoded, as the vendor documents
    ("Basic :Secret123", "", "Secret123"),
    ("Basic admin:pass word", "admin", "pass word"),
])
def test_accepted_forms(header: str, login: str, secret: str) -> None:
    creds = parse_authorization(header)
    assert (creds.login, creds.secret) == (login, secret)
    assert creds.password_only == (login == "")


@pytest.mark.parametrize("header, problem", [
    ("Bearer abc", "not Basic"),
    ("Basic", "empty"),
    ("Basic    ", "empty"),
    ("Basic !!!notbase64", "neither base64"),
    (f"Basic {b64('nocolon')}", "no ':'"),
    (f"Basic {b64('admin:')}", "password"),
    ("Basic admin:", "password"),
    (f"Basic {b64('admin:Sec' + chr(0) + 'ret')}", "control"),
    ("Basic " + "A" * MAX_AUTHORIZATION_LENGTH, "longer"),
    (f"Basic {base64.b64encode(b'admin:' + bytes([0x98])).decode()}", "not UTF-8"),
])
def test_malformed_is_refused_with_a_reason(header: str, problem: str) -> None:
    with pytest.raises(CredentialError, match=problem):
        parse_authorization(header)


def test_errors_and_repr_never_show_the_secret() -> None:
    assert "Secret123" not in repr(BasicCredentials("admin", "Secret123"))
    with pytest.raises(CredentialError) as caught:
        parse_authorization("Basic admin:Secret123" + chr(1))
    assert "Secret123" not in str(caught.value)
