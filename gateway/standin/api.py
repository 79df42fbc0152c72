"""The legacy server's documented OData REST API, imitated: /api/v1/... and /MobileSMARTS/api/v1/...

Collections: DocTypes, Docs (GET, POST, Docs/{DocType}, Docs('{id}') GET/PUT/PATCH/DELETE),
Products ($top/$skip, streamed; POST bulk upload; Products('{id}'); BeginUpdate/EndUpdate),
Warehouses, Tables/{Name} (with BeginUpdate/EndUpdate), session (token by user name and
password). Collection names match case-insensitively, as on the real (IIS-hosted) server.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets
from collections import OrderedDict
from typing import Any

from gateway.standin import data
from gateway.standin.http11 import HttpError, Request, Response
from gateway.standin.responses import ODATA_TYPE, odata_response

API_PREFIXES = (("api", "v1"), ("mobilesmarts", "api", "v1"))
# Uploaded documents are JSON parsed in memory; the real server's documents are far smaller.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
# Documents posted during a long benchmark must not grow the process without bound.
MAX_STORED_DOCUMENTS = 10_000
DEFAULT_TOP = 100
BUFFERED_PRODUCTS = 2000
MAX_TABLE_ROWS = 100_000

_KEYED = re.compile(r"^(?P<name>[A-Za-z]+)\('(?P<key>.*)'\)$")
_COLLECTIONS = ["DocTypes", "Docs", "Products", "Warehouses", "Tables", "session"]
_update_ids = itertools.count(1)


def split_api_path(segments: list[str]) -> tuple[str, list[str]] | None:
    """(the prefix as written, the segments after it) when the path is under an API prefix."""
    for prefix in API_PREFIXES:
        if tuple(part.lower() for part in segments[: len(prefix)]) == prefix:
            return "/".join(segments[: len(prefix)]), segments[len(prefix):]
    return None


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        methods = ", ".join(sorted({*allowed, "HEAD"} if "GET" in allowed else set(allowed)))
        raise HttpError(405, f"method {method} is not allowed here; use {methods}", [("Allow", methods)])


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
    text = request.params.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) > maximum:
        raise HttpError(400, f"query option {name} must be an integer from 0 to {maximum}, got {text[:30]!r}")
    return int(text)


class ODataApi:
    """One base's API state: the documents it holds live as long as the server."""

    def __init__(self) -> None:
        self._documents: OrderedDict[str, dict[str, Any]] = OrderedDict(
            (document["id"], document) for document in data.seed_documents()
        )
        self._doc_type_names = {doc_type["name"] for doc_type in data.DOC_TYPES}

    async def handle(self, request: Request, prefix: str, rest: list[str]) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        context = f"http://{request.header('host') or 'localhost'}/{prefix}/$metadata"
        if not rest:
            _allow(method, "GET")
            return odata_response(200, {
                "@odata.context": context,
                "value": [{"name": name, "kind": "EntitySet", "url": name} for name in _COLLECTIONS],
            })
        head, tail = rest[0], rest[1:]
        name = head.lower()
        keyed = _KEYED.match(head)
        if keyed and not tail:
            return await self._keyed(request, method, context, keyed["name"].lower(), keyed["key"])
        if name == "doctypes" and not tail:
            _allow(method, "GET")
            return odata_response(200, {"@odata.context": f"{context}#DocTypes", "value": data.DOC_TYPES})
        if name == "warehouses" and not tail:
            _allow(method, "GET")
            return odata_response(200, {"@odata.context": f"{context}#Warehouses", "value": data.WAREHOUSES})
        if name == "docs" and not tail:
            _allow(method, "GET", "POST")
            if method == "POST":
                return await self._post_document(request, context)
            return self._document_list(request, f"{context}#Docs", list(self._documents.values()))
        if name == "docs" and len(tail) == 1:
            _allow(method, "GET")
            if tail[0] not in self._doc_type_names:
                raise HttpError(404, f"unknown document type {tail[0]!r}; see /{prefix}/DocTypes")
            chosen = [doc for doc in self._documents.values() if doc["documentTypeName"] == tail[0]]
            return self._document_list(request, f"{context}#Docs", chosen)
        if name == "products" and not tail:
            _allow(method, "GET", "POST")
            if method == "POST":
                return await _bulk_upload(request)
            return _product_list(request, f"{context}#Products")
        if name in ("products", "tables") and tail and tail[-1].lower() in ("beginupdate", "endupdate"):
            if (name == "products" and len(tail) == 1) or (name == "tables" and len(tail) == 2):
                _allow(method, "POST")
                await request.body.drain()
                return odata_response(200, {
                    "@odata.context": f"{context}#UpdateStatus",
                    "updateId": next(_update_ids),
                    "operation": tail[-1],
                    "status": "ok",
                })
        if name == "tables" and len(tail) == 1:
            _allow(method, "GET")
            count = _int_param(request, "$top", DEFAULT_TOP, MAX_TABLE_ROWS)
            return odata_response(200, {"@odata.context": f"{context}#Tables/{tail[0]}",
                                        "value": data.table_rows(tail[0], count)})
        if name == "session" and not tail:
            _allow(method, "GET")
            return _session(request, context)
        raise HttpError(404, f"no such resource: {request.raw_path}")

    async def _keyed(self, request: Request, method: str, context: str, name: str, key: str) -> Response:
        if name == "products":
            _allow(method, "GET")
            index = data.product_index(key)
            if index is None:
                raise HttpError(404, f"no product with id {key!r}")
            return odata_response(200, {"@odata.context": f"{context}#Products/$entity", **data.product(index)})
        if name != "docs":
            raise HttpError(404, f"no such resource: {request.raw_path}")
        _allow(method, "GET", "PUT", "PATCH", "DELETE")
        document = self._documents.get(key)
        if document is None:
            await request.body.drain()
            raise HttpError(404, f"no document with id {key!r}")
        if method == "DELETE":
            del self._documents[key]
            return Response(204)
        if method in ("PUT", "PATCH"):
            changes = await _read_json_object(request)
            updated = {**document, **changes, "id": key} if method == "PATCH" else {**changes, "id": key}
            self._check_document(updated)
            self._documents[key] = updated
            document = updated
        return odata_response(200, {"@odata.context": f"{context}#Docs/$entity", **document})

    def _check_document(self, document: dict[str, Any]) -> None:
        type_name = document.get("documentTypeName")
        if type_name not in self._doc_type_names:
            known = ", ".join(sorted(self._doc_type_names))
            raise HttpError(400, f"documentTypeName {type_name!r} is not a known document type; use one of: {known}")

    async def _post_document(self, request: Request, context: str) -> Response:
        document = await _read_json_object(request)
        self._check_document(document)
        key = str(document.get("id") or data.stable_id("posted", secrets.randbits(64)))
        created = key not in self._documents
        document = {"name": "", "warehouseId": "1", "finished": False, **document, "id": key}
        self._documents[key] = document
        self._documents.move_to_end(key)
        while len(self._documents) > MAX_STORED_DOCUMENTS:
            self._documents.popitem(last=False)
        return odata_response(201 if created else 200, {"@odata.context": f"{context}#Docs/$entity", **document})

    def _document_list(self, request: Request, context: str, documents: list[dict[str, Any]]) -> Response:
        skip = _int_param(request, "$skip", 0, MAX_STORED_DOCUMENTS)
        top = _int_param(request, "$top", len(documents), MAX_STORED_DOCUMENTS)
        return odata_response(200, {"@odata.context": context, "value": documents[skip: skip + top]})


async def _read_json_object(request: Request) -> dict[str, Any]:
    raw = await request.body.read_all(MAX_DOCUMENT_BYTES)
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HttpError(400, f"request body is not UTF-8 JSON: {error}") from error
    if not isinstance(value, dict):
        raise HttpError(400, "request body must be a JSON object")
    value.pop("@odata.context", None)
    return value


def _product_list(request: Request, context: str) -> Response:
    top = _int_param(request, "$top", DEFAULT_TOP, data.MAX_PRODUCTS)
    skip = _int_param(request, "$skip", 0, data.MAX_PRODUCTS)
    top = max(0, min(top, data.MAX_PRODUCTS - skip))
    pieces = data.odata_list_pieces(context, data.product_pieces(skip, top))
    # Pages up to ~1 MB go out whole with a Content-Length, as the real server sends them;
    # longer lists are streamed chunked so memory stays flat whatever $top asks.
    body = b"".join(pieces) if top <= BUFFERED_PRODUCTS else pieces
    return Response(200, [("Content-Type", ODATA_TYPE), ("OData-Version", "4.0")], body)


async def _bulk_upload(request: Request) -> Response:
    # Product uploads can be tens of MB: count and hash them, never hold them.
    digest = hashlib.sha256()
    size = 0
    async for piece in request.body:
        digest.update(piece)
        size += len(piece)
    return odata_response(200, {"received": size, "sha256": digest.hexdigest(), "status": "ok"})


def _session(request: Request, context: str) -> Response:
    params = request.params
    if not params.get("username") or not params.get("password"):
        raise HttpError(400, "query options username and password are required")
    # A fake token: the stand-in has no users; the gateway is what checks credentials.
    return odata_response(200, {
        "@odata.context": f"{context}#session",
        "token": secrets.token_urlsafe(24),
        "userName": params["username"],
        "expiresIn": 3600,
    })
