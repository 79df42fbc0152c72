import stat
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway.accounts import AccountError, Accounts
from gateway.store import keys
from gateway.auth.authenticate import Authenticator
from gateway.accounts.rules import password_weaknesses
from gateway.accounts.transfer import export_accounts, import_accounts
from gateway.auth.session_tokens import Sessions
from gateway.store import SqliteStore

PASSWORD, OTHER, BARCODE = "Secret123", "Другой456Пароль", "4600000000017"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    # Still argon2id, just light enough for a test suite.
    monkeypatch.setattr(keys, "_hasher", PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1))


@pytest.fixture
def accounts(tmp_path: Path) -> Accounts:
    acc = Accounts(SqliteStore(tmp_path / "gateway.db"), keys.load_or_create_secret(tmp_path))
    acc.add_group("Операторы ТСД", "mobile", ("Приход", "Расход"))
    return acc


@pytest.mark.parametrize("password, weak", [
    ("Secret123", False),
    ("Пароль123Ё", False),
    ("secret123", True),
    ("SECRET123", True),
    ("Secretabc", True),
    ("Sec123", True),
])
def test_password_strength(password: str, weak: bool) -> None:
    assert bool(password_weaknesses(password)) == weak


def test_group_needs_a_document_type_with_the_seeds_message(accounts: Accounts) -> None:
    with pytest.raises(AccountError, match="at least one operation.*хотя бы одну операцию"):
        accounts.add_group("Пустая", "mobile", ())
    with pytest.raises(AccountError, match="role 'boss'"):
        accounts.add_group("Boss", "boss", ("X",))


def test_uniqueness_of_passwords_and_barcodes(accounts: Accounts) -> None:
    accounts.add_user("Иванов", "Операторы ТСД", PASSWORD, barcode=BARCODE)
    with pytest.raises(AccountError, match="already in use"):
        accounts.add_user("Петров", "1", PASSWORD)
    with pytest.raises(AccountError, match="already in use"):  # a barcode equal to someone's barcode
        accounts.add_user("Петров", "1", OTHER, barcode=BARCODE)
    with pytest.raises(AccountError, match="already in use"):  # a password equal to someone's barcode
        accounts.add_user("Петров", "1", BARCODE, force=True)
    with pytest.raises(AccountError, match="already in use"):  # a barcode equal to someone's password
        accounts.add_user("Петров", "1", OTHER, barcode=PASSWORD)
    with pytest.raises(AccountError, match="equals the password"):
        accounts.add_user("Петров", "1", OTHER, barcode=OTHER)
    with pytest.raises(AccountError, match="empty"):
        accounts.add_user("Петров", "1", "")
    petrov = accounts.add_user("Петров", "1", OTHER)
    with pytest.raises(AccountError, match="already in use"):
        accounts.set_password("Петров", PASSWORD)
    with pytest.raises(AccountError, match="already in use"):
        accounts.set_barcode("Петров", BARCODE)
    accounts.set_barcode("Петров", "2000000000015")
    assert accounts.user(petrov.id).has_barcode


def test_weak_password_needs_force_and_is_logged_without_it(accounts: Accounts, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(AccountError, match="weak") as caught:
        accounts.add_user("Иванов", "1", "weakpass")
    assert "weakpass" not in str(caught.value)
    accounts.add_user("Иванов", "1", "weakpass", force=True)
    assert "weak password accepted with --force" in caplog.text
    assert "weakpass" not in caplog.text


def test_nothing_reversible_is_stored(accounts: Accounts, tmp_path: Path) -> None:
    accounts.add_user("Иванов", "1", PASSWORD, barcode=BARCODE)
    accounts.store.close()
    for path in tmp_path.glob("gateway.db*"):
        data = path.read_bytes()
        for secret in (PASSWORD, BARCODE):
            assert secret.encode() not in data
    key_file = tmp_path / keys.SECRET_FILE
    assert len(key_file.read_bytes()) == 64
    if sys.platform != "win32":
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert keys.load_or_create_secret(tmp_path) == keys.load_or_create_secret(tmp_path)


def test_authenticator_password_only_named_and_barcode(accounts: Accounts) -> None:
    accounts.add_user("Иванов", "1", PASSWORD, barcode=BARCODE)
    auth = Authenticator(accounts.store, accounts.secret, cache_seconds=30)
    ok = auth.verify("", PASSWORD, allow_barcode=False)
    assert ok.principal is not None and ok.principal.group.role == "mobile"
    assert auth.verify("иванов", PASSWORD, False).ok
    assert not auth.verify("Петров", PASSWORD, False).ok
    assert not auth.verify("", "Wrong1234", False).ok
    refused = auth.verify("", BARCODE, allow_barcode=False)
    assert not refused.ok and "barcode" in refused.reason and BARCODE not in refused.reason
    assert auth.verify("", BARCODE, allow_barcode=True).ok


def test_cache_runs_argon2_once_and_drops_on_change(accounts: Accounts) -> None:
    accounts.add_user("Иванов", "1", PASSWORD, barcode=BARCODE)
    auth = Authenticator(accounts.store, accounts.secret, cache_seconds=30)
    for _ in range(100):
        if auth.cached("", PASSWORD, False) is None:
            assert auth.verify("", PASSWORD, False).ok
    assert auth.argon2_runs == 1
    # a password change by another process (another Accounts on the same file) ends the entry
    other = Accounts(SqliteStore(accounts.store.path), accounts.secret)  # type: ignore[attr-defined]
    other.set_password("Иванов", OTHER)
    assert auth.cached("", PASSWORD, False) is None
    assert not auth.verify("", PASSWORD, False).ok
    assert auth.verify("", OTHER, False).ok
    assert auth.cached("", OTHER, False) is not None
    other.remove_user("Иванов")
    assert auth.cached("", OTHER, False) is None
    # a cached barcode login is not honoured on a base without barcode login
    accounts.add_user("Петров", "1", PASSWORD, barcode=BARCODE)
    assert auth.verify("", BARCODE, True).ok
    assert auth.cached("", BARCODE, False) is None


def test_sessions_end_on_logout_expiry_and_password_change(accounts: Accounts) -> None:
    accounts.add_user("Иванов", "1", PASSWORD)
    principal = accounts.store.principal("1")
    assert principal is not None
    now = [1000.0]
    sessions = Sessions(accounts.store, ttl=60, clock=lambda: now[0])
    token, expires = sessions.create(principal)
    assert expires == 1060 and len(token) >= 40
    resolved = sessions.resolve(token)
    assert resolved is not None and resolved.user.name == "Иванов"
    assert sessions.resolve(token + "x") is None
    now[0] = 1061
    assert sessions.resolve(token) is None
    now[0] = 1000
    accounts.set_password("Иванов", OTHER)
    assert sessions.resolve(token) is None
    principal = accounts.store.principal("1")
    assert principal is not None
    token, _ = sessions.create(principal)
    sessions.end(token)
    assert sessions.resolve(token) is None


def test_export_import_round_trip_hashes_only(accounts: Accounts, tmp_path: Path) -> None:
    accounts.add_user("Иванов", "1", PASSWORD, barcode=BARCODE, warehouses=("Общий",))
    text = export_accounts(accounts.store, accounts.secret)
    assert PASSWORD not in text and BARCODE not in text and "$argon2id$" in text
    target = tmp_path / "other"
    target.mkdir()
    (target / keys.SECRET_FILE).write_bytes((tmp_path / keys.SECRET_FILE).read_bytes())
    store = SqliteStore(target / "gateway.db")
    assert import_accounts(store, accounts.secret, text, Path("users.yaml")) == (1, 1)
    auth = Authenticator(store, accounts.secret, cache_seconds=0)
    ok = auth.verify("", PASSWORD, False)
    assert ok.principal is not None and ok.principal.user.warehouses == ("Общий",)
    assert auth.verify("", BARCODE, True).ok
    # importing again replaces, it does not duplicate
    assert import_accounts(store, accounts.secret, text, Path("users.yaml")) == (1, 1)
    assert len(store.list_users()) == 1


def test_import_refuses_another_key_and_bad_entries(accounts: Accounts, tmp_path: Path) -> None:
    accounts.add_user("Иванов", "1", PASSWORD)
    text = export_accounts(accounts.store, accounts.secret)
    store = SqliteStore(tmp_path / "other.db")
    with pytest.raises(AccountError, match=f"users.yaml: secret_fingerprint: .*{keys.SECRET_FILE}"):
        import_accounts(store, b"x" * 32, text, Path("users.yaml"))
    broken = text.replace("$argon2id$", "$plain$")
    with pytest.raises(AccountError, match=r"users\[0\]\.password"):
        import_accounts(store, accounts.secret, broken, Path("users.yaml"))
    assert store.list_users() == []
