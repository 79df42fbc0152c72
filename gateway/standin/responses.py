"""JSON responses in the shapes the legacy server uses (OData 4.0 style)."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from gateway.standin.http11 import Response

JSON_TYPE = "application/json; charset=utf-8"
ODATA_TYPE = "application/json; odata.metadata=minimal; charset=utf-8"


def json_body(value: Any) -> bytes:
    # ensure_ascii=False: Cyrillic names travel as UTF-8, as the real server sends them.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, [("Content-Type", JSON_TYPE), *(headers or [])], json_body(value))


def odata_response(status: int, value: Any) -> Response:
    return Response(status, [("Content-Type", ODATA_TYPE), ("OData-Version", "4.0")], json_body(value))


def error_response(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    """An OData error object: {"error": {"code": ..., "message": ...}}."""
    code = HTTPStatus(status).phrase.replace(" ", "") if status in HTTPStatus._value2member_map_ else str(status)
    return json_response(status, {"error": {"code": code, "message": message}}, headers)
