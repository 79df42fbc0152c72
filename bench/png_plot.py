"""A line chart as a PNG with the standard library only (zlib): matplotlib is not among the
project's dependencies, and a benchmark should not pull it in for one picture.

Axes with tick values (a 3x5 digit font), one coloured line per series, a legend of colour
swatches in the order of the series; the caption naming them lives in the text beside it.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
_DIGITS = {  # 3x5 bitmaps, rows top to bottom
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", "k": "100101110101101",
}
W, H, LEFT, BOTTOM, TOP, RIGHT, SCALE = 800, 500, 70, 50, 20, 20, 2


class _Canvas:
    def __init__(self) -> None:
        self.pixels = bytearray(b"\xff" * (W * H * 3))

    def dot(self, x: int, y: int, colour: tuple[int, int, int]) -> None:
        if 0 <= x < W and 0 <= y < H:
            i = (y * W + x) * 3
            self.pixels[i:i + 3] = bytes(colour)

    def line(self, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int], width: int = 1) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for s in range(steps + 1):
            x, y = x0 + (x1 - x0) * s // steps, y0 + (y1 - y0) * s // steps
            for dx in range(width):
                for dy in range(width):
                    self.dot(x + dx, y + dy, colour)

    def text(self, x: int, y: int, text: str) -> None:
        for ch in text:
            bits = _DIGITS.get(ch)
            if bits:
                for k, bit in enumerate(bits):
                    if bit == "1":
                        for dx in range(SCALE):
                            for dy in range(SCALE):
                                self.dot(x + (k % 3) * SCALE + dx, y + (k // 3) * SCALE + dy, (0, 0, 0))
            x += 4 * SCALE

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.pixels[y * W * 3:(y + 1) * W * 3]) for y in range(H))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _nice(top: float) -> float:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000):
        if top / step <= 8:
            return step
    return top / 8


def line_chart(path: Path, series: list[tuple[str, list[tuple[float, float]]]], *, x_label: str = "",
               y_label: str = "") -> None:
    """Draw ``series`` (name, [(x, y), ...]) into ``path``; labels are for the caller's caption."""
    canvas = _Canvas()
    xs = [x for _, pts in series for x, _ in pts] or [1]
    ys = [y for _, pts in series for _, y in pts] or [1]
    x_step, y_step = _nice(max(xs)), _nice(max(ys))
    x_top = x_step * (int(max(xs) / x_step) + (max(xs) % x_step > 0))
    y_top = y_step * (int(max(ys) / y_step) + 1)

    def at(x: float, y: float) -> tuple[int, int]:
        return (LEFT + int((x / x_top) * (W - LEFT - RIGHT)), H - BOTTOM - int((y / y_top) * (H - BOTTOM - TOP)))

    tick = 0.0
    while tick <= y_top + 1e-9:
        x0, y0 = at(0, tick)
        canvas.line(x0, y0, W - RIGHT, y0, (225, 225, 225))
        label = f"{tick:g}"
        canvas.text(x0 - 8 - len(label) * 4 * SCALE, y0 - 5, label)
        tick += y_step
    tick = 0.0
    while tick <= x_top + 1e-9:
        x0, y0 = at(tick, 0)
        canvas.line(x0, TOP, x0, y0, (225, 225, 225))
        label = f"{tick / 1000:g}k" if tick >= 1000 else f"{tick:g}"
        canvas.text(x0 - len(label) * 2 * SCALE, y0 + 8, label)
        tick += x_step
    canvas.line(LEFT, TOP, LEFT, H - BOTTOM, (0, 0, 0))
    canvas.line(LEFT, H - BOTTOM, W - RIGHT, H - BOTTOM, (0, 0, 0))
    for index, (_, points) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        for (xa, ya), (xb, yb) in zip(points, points[1:]):
            canvas.line(*at(xa, ya), *at(xb, yb), colour, width=3)
        canvas.line(LEFT + 20, TOP + 15 + 20 * index, LEFT + 60, TOP + 15 + 20 * index, colour, width=6)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(canvas.png())
