"""One TLS session-ticket key for every worker process, so a returning client resumes its TLS
session whichever worker the kernel hands its connection to.

OpenSSL makes a random ticket key per SSL_CTX, i.e. per worker. The supervisor makes one key
before the workers start and hands it to each through an inherited pipe; every server context
the worker builds (at start, on reload, on a certificate hot swap) gets it with
``SSL_CTX_ctrl(ctx, SSL_CTRL_SET_TLSEXT_TICKET_KEYS, 80, key)``.

pyOpenSSL does not expose that call, and cryptography links OpenSSL statically without
exporting it, so its address is found in the symbol table of cryptography's own
``_rust`` library (the same OpenSSL that made the context — never another copy of OpenSSL).
The key is read back after setting it; when any of this is not possible the worker logs that
resumption stays per worker and serves on (a missing optimisation, not a security problem).
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import struct
from pathlib import Path

from OpenSSL import SSL

logger = logging.getLogger("gateway.tls")

KEY_LENGTH = 80  # 16 bytes key name, 32 HMAC secret, 32 AES key (OpenSSL ≥ 1.1)
SSL_CTRL_GET_TLSEXT_TICKET_KEYS = 58
SSL_CTRL_SET_TLSEXT_TICKET_KEYS = 59
KEY_FD_ENV = "GATEWAY_TICKET_KEY_FD"

_key: bytes | None = None
_ctrl: object | None = None
_unavailable: str | None = None


def new_key() -> bytes:
    return secrets.token_bytes(KEY_LENGTH)


def use_key(key: bytes | None) -> None:
    """Every context built from now on in this process gets ``key`` (None: OpenSSL's own)."""
    global _key
    if key is not None and len(key) != KEY_LENGTH:
        raise ValueError(f"a ticket key is {KEY_LENGTH} bytes")
    _key = key


def read_key_from_supervisor() -> None:
    """In a worker: take the key the supervisor wrote into the inherited pipe."""
    fd = os.environ.pop(KEY_FD_ENV, None)
    if fd is None:
        return
    data = b""
    try:
        while len(data) < KEY_LENGTH:
            chunk = os.read(int(fd), KEY_LENGTH - len(data))
            if not chunk:
                break
            data += chunk
        os.close(int(fd))
    except (OSError, ValueError):
        pass
    if len(data) == KEY_LENGTH:
        use_key(data)
    else:
        logger.warning("no shared TLS session-ticket key from the supervisor; sessions resume per worker only")


def apply(context: SSL.Context) -> None:
    """Give ``context`` the shared ticket key, if this process has one."""
    global _unavailable
    if _key is None or _unavailable is not None:
        return
    try:
        ctrl = _ssl_ctx_ctrl()
        from OpenSSL._util import ffi
        pointer = ctypes.c_void_p(int(ffi.cast("uintptr_t", context._context)))  # type: ignore[attr-defined]
        key = ctypes.create_string_buffer(_key, KEY_LENGTH)
        if ctrl(pointer, SSL_CTRL_SET_TLSEXT_TICKET_KEYS, KEY_LENGTH, key) != 1:  # type: ignore[operator]
            raise OSError("OpenSSL refused the ticket key")
        back = ctypes.create_string_buffer(KEY_LENGTH)
        ctrl(pointer, SSL_CTRL_GET_TLSEXT_TICKET_KEYS, KEY_LENGTH, back)  # type: ignore[operator]
        if back.raw != _key:
            raise OSError("the ticket key did not stick")
    except Exception as e:
        _unavailable = str(e)
        logger.warning("cannot share the TLS session-ticket key between workers (%s); a returning client "
                       "resumes its session only on the worker it first reached", e)


def _ssl_ctx_ctrl() -> object:
    global _ctrl
    if _ctrl is None:
        from cryptography.hazmat.bindings import _rust

        path = Path(_rust.__file__)
        symbols = _elf_symbols(path, {b"SSL_CTX_ctrl", b"PyInit__rust"})
        if b"SSL_CTX_ctrl" not in symbols or b"PyInit__rust" not in symbols:
            raise OSError(f"SSL_CTX_ctrl not found in {path.name}")
        library = ctypes.CDLL(str(path))
        base = ctypes.cast(library.PyInit__rust, ctypes.c_void_p).value - symbols[b"PyInit__rust"]  # type: ignore[operator]
        prototype = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p)
        _ctrl = prototype(base + symbols[b"SSL_CTX_ctrl"])
    return _ctrl


def _elf_symbols(path: Path, wanted: set[bytes]) -> dict[bytes, int]:
    """Values of the named function symbols in a 64-bit little-endian ELF file (.symtab and .dynsym)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise OSError(f"{path.name} is not a 64-bit little-endian ELF library")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    found: dict[bytes, int] = {}
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind not in (2, 11) or not entsize:  # SHT_SYMTAB, SHT_DYNSYM
            continue
        strtab_offset = sections[link][4]
        for index in range(size // entsize):
            st_name, st_info, _other, st_shndx, st_value, _size = struct.unpack_from(
                "<IBBHQQ", data, offset + index * entsize)
            if st_value == 0 or st_info & 0xF != 2:  # STT_FUNC
                continue
            end = data.index(b"\0", strtab_offset + st_name)
            name = data[strtab_offset + st_name:end]
            if name in wanted:
                found[name] = st_value
    return found
