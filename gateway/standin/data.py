"""Deterministic demo data of a warehouse base: document types, warehouses, documents,
products and reference tables, plus pseudo-random byte streams.

Everything is a pure function of its arguments, so two runs (and the gateway's tests on
either side of it) see the same bytes. Big outputs are generators of encoded pieces, so a
200 000-product list never exists in memory as a whole.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import random
from collections.abc import Iterator
from typing import Any

# Product lists of the real server run to tens of MB; this cap keeps a typo from asking for a
# response that takes minutes to produce.
MAX_PRODUCTS = 1_000_000
MAX_RANDOM_BYTES = 4 * 1024**3
RANDOM_BLOCK = 64 * 1024
# A batch of products is one streamed piece (~160 KiB of JSON).
PRODUCT_BATCH = 500

DOC_TYPES: list[dict[str, Any]] = [
    {"name": "Поступление", "alias": "Приход", "description": "Приёмка товара на склад"},
    {"name": "Инвентаризация", "alias": "Инвентаризация", "description": "Пересчёт остатков"},
    {"name": "Перемещение", "alias": "Перемещение", "description": "Перемещение между складами"},
    {"name": "Продажа", "alias": "Продажа", "description": "Отгрузка покупателю"},
    {"name": "Списание", "alias": "Списание", "description": "Списание испорченного товара"},
    {"name": "Возврат", "alias": "Возврат", "description": "Возврат от покупателя"},
    {"name": "Подбор заказа", "alias": "Подбор", "description": "Сборка заказа по ячейкам"},
    {"name": "Маркировка", "alias": "Маркировка", "description": "Нанесение кодов маркировки"},
]
for _index, _doc_type in enumerate(DOC_TYPES):
    _doc_type.update(id=f"doctype-{_index + 1}", isEnabled=True, serverSide=_index % 2 == 0)

WAREHOUSES: list[dict[str, Any]] = [
    {"id": "1", "name": "Основной склад", "address": "г. Москва, ул. Складская, д. 1"},
    {"id": "2", "name": "Магазин 15 Вещевой", "address": "г. Тверь, пр-т Победы, д. 15"},
    {"id": "3", "name": "Склад возвратов", "address": "г. Москва, ул. Складская, д. 1, стр. 2"},
]

_PRODUCT_NAMES = [
    "Куртка зимняя", "Ботинки мужские", "Шапка вязаная", "Перчатки кожаные", "Футболка хлопок",
    "Джинсы классические", "Свитер шерстяной", "Кроссовки беговые", "Шарф", "Рюкзак городской",
]
_PACKING_NAMES = ["шт", "упак", "кор"]


def stable_id(kind: str, index: int) -> str:
    """A GUID-shaped identifier that depends only on kind and index."""
    digest = hashlib.md5(f"{kind}:{index}".encode(), usedforsecurity=False).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}"


def product_id(index: int) -> str:
    """A product's GUID-shaped id; it ends with the index in hex so a lookup needs no table."""
    return stable_id("product", index)[:24] + f"{index:012x}"


def product_index(product_key: str) -> int | None:
    """The index a product_id was made from, or None when it is not one."""
    try:
        index = int(product_key[-12:], 16)
    except ValueError:
        return None
    return index if index < MAX_PRODUCTS and product_id(index) == product_key else None


def ean13(number: int) -> str:
    """A valid EAN-13 (Russian 460 prefix) for a product number."""
    body = f"460{number % 10**9:09d}"
    total = sum(int(digit) * (3 if position % 2 else 1) for position, digit in enumerate(body))
    return body + str((10 - total % 10) % 10)


def seed_documents() -> list[dict[str, Any]]:
    """Two documents of every type, as a freshly started base would hold."""
    documents = []
    for type_index, doc_type in enumerate(DOC_TYPES):
        for copy in range(2):
            number = type_index * 2 + copy + 1
            documents.append({
                "id": stable_id("doc", number),
                "name": f"{doc_type['name']} №{number:05d}",
                "documentTypeName": doc_type["name"],
                "warehouseId": WAREHOUSES[number % len(WAREHOUSES)]["id"],
                "barcode": ean13(900_000 + number),
                "description": "",
                "appointment": "",
                "autoAppointed": False,
                "serverHosted": False,
                "finished": copy == 0,
                "createDate": f"2024-03-{number % 28 + 1:02d}T09:00:00+03:00",
            })
    return documents


# The JSON of one product in the vendor's documented shape, built from a template because
# json.dumps per item is several times slower and the product list is the benchmark body.
_PRODUCT_TEMPLATE = (
    '{{"id":"{id}","name":{name},"barcode":"{barcode}","basePackingId":"{packing}",'
    '"marking":"М-{number:06d}","withSeries":false,"withSerialNumber":false,"withAttributes":false,'
    '"packings":[{{"id":"{packing}","name":{packing_name},"unitsQuantity":1,"barcode":"{barcode}",'
    '"barcodes":["{barcode}"],"quantity":{quantity},"price":{price},"isWeighed":false}}]}}'
)


def product_json(index: int) -> str:
    name = f"{_PRODUCT_NAMES[index % len(_PRODUCT_NAMES)]} арт. {index:06d}"
    return _PRODUCT_TEMPLATE.format(
        id=product_id(index),
        name=json.dumps(name, ensure_ascii=False),
        barcode=ean13(index),
        packing=stable_id("packing", index),
        packing_name=json.dumps(_PACKING_NAMES[index % len(_PACKING_NAMES)], ensure_ascii=False),
        number=index,
        quantity=index * 7 % 500,
        price=(index * 7919 % 100_000) / 100,
    )


@functools.lru_cache(maxsize=128)
def _product_batch(start: int, stop: int) -> bytes:
    # Benchmarks ask for the same first pages again and again: keep their encoded form.
    return ",".join(product_json(index) for index in range(start, stop)).encode()


def odata_list_pieces(context: str, items: Iterator[bytes]) -> Iterator[bytes]:
    """An OData collection `{"@odata.context": ..., "value": [...]}` from encoded item pieces."""
    yield b'{"@odata.context":' + json.dumps(context, ensure_ascii=False).encode() + b',"value":['
    first = True
    for piece in items:
        yield piece if first else b"," + piece
        first = False
    yield b"]}"


def product_pieces(skip: int, top: int) -> Iterator[bytes]:
    """Encoded products skip .. skip+top-1, joined by commas, in batches."""
    start, stop = skip, skip + top
    # Batches are aligned on PRODUCT_BATCH so the cache hits whatever skip was asked.
    batch_start = start - start % PRODUCT_BATCH
    while batch_start < stop:
        batch_stop = batch_start + PRODUCT_BATCH
        if batch_start >= start and batch_stop <= stop:
            yield _product_batch(batch_start, batch_stop)
        else:
            yield _product_batch(max(batch_start, start), min(batch_stop, stop))
        batch_start = batch_stop


def product(index: int) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(product_json(index))
    return result


def table_rows(table: str, count: int) -> list[dict[str, Any]]:
    """Rows of a reference table (the real server's Tables/{Name}); any name has rows."""
    return [
        {"id": stable_id(f"table:{table}", index), "code": f"{index + 1:05d}",
         "name": f"{table} — запись {index + 1}"}
        for index in range(count)
    ]


def random_pieces(size: int, seed: str) -> Iterator[bytes]:
    """size pseudo-random bytes derived from seed, in RANDOM_BLOCK pieces.

    The block size is fixed, so the byte sequence does not depend on how it is consumed.
    """
    generator = random.Random(seed)
    remaining = size
    while remaining > 0:
        block = generator.randbytes(RANDOM_BLOCK)
        yield block[:remaining] if remaining < RANDOM_BLOCK else block
        remaining -= RANDOM_BLOCK


@functools.lru_cache(maxsize=64)
def random_sha256(size: int, seed: str) -> str:
    """SHA-256 (hex) of random_pieces(size, seed), known before sending so it can be a header."""
    digest = hashlib.sha256()
    for piece in random_pieces(size, seed):
        digest.update(piece)
    return digest.hexdigest()


@functools.lru_cache(maxsize=16)
def gzip_products(context: str, count: int) -> bytes:
    """A gzip-compressed OData product list (mtime 0, so the bytes are reproducible)."""
    plain = b"".join(odata_list_pieces(context, product_pieces(0, count)))
    return gzip.compress(plain, compresslevel=6, mtime=0)
