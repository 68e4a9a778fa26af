"""Family `table`: TabMWP-like small rendered tables with a word problem, some multiple choice.

The image is a table of three or four rows; each row is a colour swatch (the item) and a
one-digit number drawn with a 5x7 bitmap font, so reading the table needs digit recognition.
Rows are separated by rules. Questions look a number up, add or subtract two, or are multiple
choice (which item has the most; is one more than another; which option is the total), answered
with the option letter as TabMWP's multiple-choice items are. The gold rationale copies the table
first ("Table: red 3, blue 7."), then does the arithmetic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from r3v.embedded.common import BACKGROUND, COLOURS, INK, Item, to_png

NAME = "table"
PREFIX = "table"
QTYPES = ("lookup", "total", "difference", "most", "compare", "total_choice")
CLASSES = [f"{c} swatch" for c in COLOURS] + [f"digit {d}" for d in range(10)]
LETTERS = "ABCD"
STORY = "The table shows how many stickers each child has."
GLYPHS = {  # 5x7 bitmap digits
    0: ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    1: ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    2: ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    3: ("11110", "00001", "00001", "01110", "00001", "00001", "11110"),
    4: ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    5: ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    6: ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    7: ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    8: ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    9: ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
}


@dataclass(frozen=True)
class Row:
    colour: str
    value: int


def scene(rng: random.Random, size: int) -> list[Row]:
    """3-4 rows, distinct colours, values 1..9 with a unique largest."""
    n = rng.randint(3, 4)
    colours = rng.sample(list(COLOURS), n)
    while True:
        values = [rng.randint(1, 9) for _ in range(n)]
        if values.count(max(values)) == 1:
            return [Row(c, v) for c, v in zip(colours, values)]


def _cell(size: int) -> int:
    return max(8, size // 8)


def _row_cells(i: int, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(x, y) of the swatch cell and of the digit cell of row i: rows on every other grid row."""
    g = _cell(size)
    return (2 * g, 2 * i * g), (5 * g, 2 * i * g)


def render(rows: list[Row], size: int) -> bytes:
    g = _cell(size)
    img = Image.new("RGB", (size, size), BACKGROUND)
    d = ImageDraw.Draw(img)
    for i, r in enumerate(rows):
        (sx, sy), (dx, dy) = _row_cells(i, size)
        d.rectangle((sx + 1, sy + 1, sx + g - 2, sy + g - 2), fill=COLOURS[r.colour])
        ox, oy = dx + (g - 5) // 2, dy + (g - 7) // 2
        for yy, line in enumerate(GLYPHS[r.value]):
            for xx, bit in enumerate(line):
                if bit == "1":
                    d.point((ox + xx, oy + yy), fill=INK)
        rule = sy + 2 * g - g // 2
        if i < len(rows) - 1 and rule < size:
            d.line([(g, rule), (size - g, rule)], fill=(150, 150, 150))  # the rule between rows
    return to_png(img)


def patch_classes(rows: list[Row], size: int, patch: int) -> np.ndarray:
    g = size // patch
    out = np.full((g, g), "background", dtype=object)
    for i, r in enumerate(rows):
        for (x, y), name in zip(_row_cells(i, size), (f"{r.colour} swatch", f"digit {r.value}")):
            cx, cy = (x + _cell(size) // 2) // patch, (y + _cell(size) // 2) // patch
            if cx < g and cy < g:
                out[cy, cx] = name
    return out


def _options(rng: random.Random, correct: str, others: list[str]) -> tuple[list[str], str]:
    opts = [correct] + others
    rng.shuffle(opts)
    return opts, LETTERS[opts.index(correct)]


def item(rows: list[Row], qtype: str, rng: random.Random) -> Item:
    reading = "Table: " + ", ".join(f"{r.colour} {r.value}" for r in rows) + "."
    facts = {"table": {r.colour: r.value for r in rows}}
    if qtype == "lookup":
        r = rng.choice(rows)
        return Item(f"{STORY} How many stickers does {r.colour} have?",
                    f"{reading} Answer: {r.value}", str(r.value), "integer", facts=facts)
    if qtype == "total":
        a, b = rng.sample(rows, 2)
        s = a.value + b.value
        return Item(f"{STORY} How many stickers do {a.colour} and "
                    f"{b.colour} have in total?", f"{reading} {a.value} + {b.value} = {s}. Answer: {s}",
                    str(s), "integer", facts=facts)
    if qtype == "difference":
        a, b = rng.sample(rows, 2)
        if a.value < b.value:
            a, b = b, a
        d = a.value - b.value
        return Item(f"{STORY} How many more stickers does {a.colour} "
                    f"have than {b.colour}?", f"{reading} {a.value} - {b.value} = {d}. Answer: {d}",
                    str(d), "integer", facts=facts)
    if qtype == "most":
        top = max(rows, key=lambda r: r.value)
        opts, letter = _options(rng, top.colour, [r.colour for r in rows if r is not top])
        return Item(f"{STORY} Who has the most stickers?",
                    f"{reading} Most: {top.colour} {top.value}. Answer: {letter}", letter, "choice",
                    choices=opts, facts=facts)
    if qtype == "compare":
        a, b = rng.sample(rows, 2)
        yes = a.value > b.value
        sign = ">" if yes else ("=" if a.value == b.value else "<")
        return Item(f"{STORY} Does {a.colour} have more stickers "
                    f"than {b.colour}?", f"{reading} {a.value} {sign} {b.value}. Answer: {'A' if yes else 'B'}",
                    "A" if yes else "B", "choice", choices=["yes", "no"], facts=facts)
    if qtype == "total_choice":
        s = sum(r.value for r in rows)
        wrong = rng.sample([s + k for k in (-3, -2, -1, 1, 2, 3) if s + k > 0], 2)
        opts, letter = _options(rng, str(s), [str(w) for w in wrong])
        adds = " + ".join(str(r.value) for r in rows)
        return Item(f"{STORY} How many stickers do they have altogether?",
                    f"{reading} {adds} = {s}. Answer: {letter}", letter, "choice", choices=opts, facts=facts)
    raise ValueError(f"unknown table question type {qtype!r}")
