"""One certificate order with the `acme` package: account (created once, then reused), new
order (with the directory's profile when one is configured), HTTP-01 or TLS-ALPN-01 answers
written where the gateway's listeners find them, finalisation, download.

Every failure is an ``AcmeError`` whose text carries the CA's own words (its problem
``detail``), because that is what tells the admin what to fix (DNS, port forwarding, limits).
"""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.certs import acme_storage as storage
from gateway.autocert.alpn import challenge_certificate
from gateway.config.acme import AcmeSettings, check_base_names, split_names
from gateway.config import BaseConfig

logger = logging.getLogger("gateway.acme")

# A CA on the internet answers in well under this; a hung one must not hold the lock for long.
NETWORK_TIMEOUT = 20
ORDER_TIMEOUT = datetime.timedelta(seconds=90)
USER_AGENT = "tls-gateway (acme-python)"


class AcmeError(Exception):
    """An order failed; the text is for the admin and quotes the CA."""


@dataclass(frozen=True)
class Issued:
    pem: bytes  # chain (leaf first) then the private key
    chain_pem: bytes


def _trust(settings: AcmeSettings, state_dir: Path) -> bool | str:
    """requests' ``verify``: the usual roots, plus ``ca_bundle`` when given (extra, not instead)."""
    if settings.ca_bundle is None:
        return True
    import certifi

    try:
        extra = settings.ca_bundle.read_bytes()
    except OSError as e:
        raise AcmeError(f"acme.ca_bundle {settings.ca_bundle}: cannot be read ({e.strerror})") from None
    combined = Path(certifi.where()).read_bytes() + b"\n" + extra
    path = storage.acme_folder(state_dir) / "trust.pem"
    storage.write_private(path, combined)
    return str(path)


def _load_or_create_account_key(key_file: Path) -> jose.JWKRSA:
    try:
        pem = key_file.read_bytes()
        key = serialization.load_pem_private_key(pem, None)
    except FileNotFoundError:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        storage.write_private(key_file, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    except (OSError, ValueError) as e:
        raise AcmeError(f"{key_file}: the ACME account key cannot be read ({e}); move it away to "
                        "register a new account") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AcmeError(f"{key_file}: not an RSA account key; move it away to register a new account")
    return jose.JWKRSA(key=key)


def _explain(error: BaseException, settings: AcmeSettings) -> str:
    """The CA's own message, or what went wrong on the way to it."""
    if isinstance(error, messages.Error):
        kind = (error.typ or "").rsplit(":", 1)[-1]
        return f"the CA answered: {error.detail or error.description or 'no detail'} ({kind})"
    if isinstance(error, errors.ValidationError):
        details = []
        for authz in error.failed_authzrs:
            for chall in authz.body.challenges:
                if chall.error is not None:
                    details.append(f"{authz.body.identifier.value}: {chall.error.detail} "
                                   f"({(chall.error.typ or '').rsplit(':', 1)[-1]})")
        return "the CA could not validate " + "; ".join(details)
    if isinstance(error, errors.TimeoutError):
        return f"the CA did not finish the order within {ORDER_TIMEOUT.seconds} s"
    if isinstance(error, requests.exceptions.SSLError):
        return (f"the ACME directory {settings.directory} presented a certificate this computer does not "
                "trust (for a private CA, name its root in acme.ca_bundle)")
    if isinstance(error, requests.exceptions.ConnectionError):
        return f"cannot reach the ACME directory {settings.directory} (connection failed: check the address, DNS and firewall)"
    if isinstance(error, requests.exceptions.Timeout):
        return f"the ACME directory {settings.directory} did not answer within {NETWORK_TIMEOUT} s"
    if isinstance(error, (requests.exceptions.RequestException, errors.ClientError, errors.Error)):
        return f"ACME request failed: {error}"
    if isinstance(error, ValueError):
        return f"the CA sent an answer this client cannot read ({error})"
    return f"{type(error).__name__}: {error}"


class AcmeSession:
    """A connection to the directory with the (loaded or newly registered) account."""

    def __init__(self, settings: AcmeSettings, state_dir: Path, store: Any = None) -> None:
        self.settings = settings
        self.state_dir = state_dir
        # With a store shared by several machines, challenge answers go there too: the CA's
        # request may reach any of them.
        self.store = store
        self._published: list[str] = []
        try:
            self._connect()
        except AcmeError:
            raise
        except Exception as e:  # noqa: BLE001 — every failure becomes one readable line
            raise AcmeError(_explain(e, settings)) from e

    def _connect(self) -> None:
        key_file, account_file = storage.account_files(self.state_dir, self.settings.directory)
        self.account_key = _load_or_create_account_key(key_file)
        net = client.ClientNetwork(self.account_key, user_agent=USER_AGENT, timeout=NETWORK_TIMEOUT,
                                   verify_ssl=_trust(self.settings, self.state_dir))  # type: ignore[arg-type]
        directory = client.ClientV2.get_directory(self.settings.directory, net)
        self.client = client.ClientV2(directory, net)
        self.directory = directory
        try:
            net.account = messages.RegistrationResource.json_loads(account_file.read_text(encoding="utf-8"))
            return
        except FileNotFoundError:
            pass
        except (OSError, ValueError, jose.DeserializationError):
            logger.warning("%s is damaged; registering the account again", account_file)
        registration = messages.NewRegistration.from_data(
            email=self.settings.email or None, terms_of_service_agreed=True)
        try:
            account = self.client.new_account(registration)
        except errors.ConflictError as e:
            # The key is registered already (the .json was lost): the CA named its account.
            known = messages.RegistrationResource(body=messages.Registration(), uri=e.location)
            self.client.net.account = known
            account = self.client.query_registration(known)
        storage.write_private(account_file, account.json_dumps().encode())
        logger.info("registered an ACME account with %s", self.settings.directory)

    def check_profile(self) -> None:
        profile = self.settings.profile
        if not profile:
            return
        offered = (self.directory.meta.profiles or {}) if self.directory.meta else {}
        if profile not in offered:
            names = ", ".join(sorted(offered)) or "none"
            raise AcmeError(f"acme.profile {profile!r} is not offered by {self.settings.directory} "
                            f"(it offers: {names})")

    def renewal_info(self, chain_pem: bytes) -> tuple[datetime.datetime | None, datetime.datetime]:
        """(the CA's suggested renewal time or None, when to ask again) — ARI."""
        try:
            suggested, ask_again = self.client.renewal_time(chain_pem)
        except errors.ARIError as e:
            logger.warning("renewal information (ARI) not available: %s", e.__cause__ or e)
            return None, _aware(e.retry_after)
        except Exception as e:  # noqa: BLE001 — a malformed answer must not undo an installed certificate
            logger.warning("renewal information (ARI) unreadable: %s", e)
            return None, datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=6)
        return (_aware(suggested) if suggested else None), _aware(ask_again)

    def order(self, base: BaseConfig) -> Issued:
        try:
            return self._order(base)
        except AcmeError:
            raise
        except Exception as e:  # noqa: BLE001
            raise AcmeError(_explain(e, self.settings)) from e
        finally:
            _clean_challenges(self.state_dir)
            for key in self._published:
                try:
                    self.store.delete_shared(key)
                except Exception:  # noqa: BLE001 — it expires by itself
                    pass
            self._published = []

    def _order(self, base: BaseConfig) -> Issued:
        names = base.tls.acme if base.tls else ()
        refused = check_base_names(names, self.settings)
        if refused:  # also checked when the configuration is read; never ask the CA about these
            raise AcmeError(refused[1])
        self.check_profile()
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        dns_names, addresses = split_names(names)
        csr = crypto_util.make_csr(key_pem, dns_names, ipaddrs=addresses)
        order = self.client.new_order(csr, profile=self.settings.profile or None)
        use_alpn = base.data.listen == self.settings.tls_alpn_port
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue
            self._answer(authz, use_alpn)
        deadline = datetime.datetime.now() + ORDER_TIMEOUT
        done = self.client.poll_and_finalize(order, deadline)
        chain_pem = done.fullchain_pem.encode("ascii")
        return Issued(pem=chain_pem + key_pem, chain_pem=chain_pem)

    def _answer(self, authz: messages.AuthorizationResource, use_alpn: bool) -> None:
        name = authz.body.identifier.value
        by_type = {c.chall.typ if not isinstance(c.chall, challenges.UnrecognizedChallenge)
                   else c.chall.jobj.get("type"): c for c in authz.body.challenges}
        if use_alpn and "tls-alpn-01" in by_type:
            challb = by_type["tls-alpn-01"]
            token = challb.chall.jobj["token"]
            key_authorization = f"{token}.{jose.b64encode(self.account_key.thumbprint()).decode()}"
            pem = challenge_certificate(name, key_authorization)
            storage.write_private(storage.alpn_challenge_file(self.state_dir, name), pem)
            self._publish(storage.shared_alpn_key(name), pem.decode("ascii"))
            # The answer is an empty JSON object for every type (RFC 8555 7.5.1).
            response: Any = challenges.HTTP01Response(key_authorization=key_authorization)
        elif "http-01" in by_type:
            challb = by_type["http-01"]
            response, validation = challb.chall.response_and_validation(self.account_key)
            token_name = challb.chall.encode("token")
            folder = storage.http_challenge_folder(self.state_dir)
            storage.write_private(folder / token_name, validation.encode("ascii"))
            self._publish(storage.shared_http_key(token_name), validation)
        else:
            offered = ", ".join(sorted(str(t) for t in by_type))
            raise AcmeError(f"{name}: the CA offers no challenge the gateway answers (it offers {offered}; "
                            "the gateway does http-01, and tls-alpn-01 on a base listening on acme.tls_alpn_port)")
        self.client.answer_challenge(challb, response)


    def _publish(self, key: str, value: str) -> None:
        if self.store is None:
            return
        self.store.put_shared(key, value, storage.CHALLENGE_TTL)
        self._published.append(key)


def _clean_challenges(state_dir: Path) -> None:
    for folder in (storage.http_challenge_folder(state_dir), storage.alpn_challenge_file(state_dir, "x").parent):
        for path in folder.glob("*") if folder.is_dir() else ():
            try:
                path.unlink()
            except OSError:
                pass


def _aware(moment: datetime.datetime) -> datetime.datetime:
    # The acme package returns naive local times for "now + delay"; make them comparable.
    return moment if moment.tzinfo is not None else moment.astimezone(datetime.timezone.utc)


def describe_account(state_dir: Path, directory: str) -> str:
    _, account_file = storage.account_files(state_dir, directory)
    try:
        return str(json.loads(account_file.read_text(encoding="utf-8")).get("uri", ""))
    except (OSError, ValueError):
        return ""
