"""Family `table`: TabMWP-like small rendered tables with a multi-step word problem.

The image is a table of three or four rows; each row is a colour swatch (a child) and a
one-digit number drawn with a 5x7 bitmap font, so reading the table needs digit recognition.
Rows are separated by rules. A question of level k follows one child's stickers through k
events, each adding or taking away another child's count from the table or a number the
question gives. The gold rationale copies the table first ("Table: red 3, blue 7, green 2."),
then writes one equation per event with what it reads and the running total:
`red 3 + blue 7 = 10. 10 - 2 = 8. Answer: 8`. (TabMWP's multiple-choice items are not part of
the levelled benchmark: a guess among four letters is right a quarter of the time from any chain.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from r3v.embedded.bench.common import BACKGROUND, COLOURS, INK, Item, chain, equations, to_png

NAME = "table"
PREFIX = "table"
CLASSES = [f"{c} swatch" for c in COLOURS] + [f"digit {d}" for d in range(10)]
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
    """3-4 rows, distinct colours, values 1..9."""
    n = rng.randint(3, 4)
    return [Row(c, rng.randint(1, 9)) for c in rng.sample(list(COLOURS), n)]


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


def reading(rows: list[Row]) -> str:
    """What the image shows, as every rationale (and the build's reading pretraining) writes it."""
    return "Table: " + ", ".join(f"{r.colour} {r.value}" for r in rows) + "."


def item(rows: list[Row], level: int, rng: random.Random) -> Item:
    """A level-k word problem: one child's stickers, then k events, each adding or taking away
    another child's count or a number: "Red gets all of blue's stickers. Then red gives away 2.
    How many stickers does red have now?"."""
    values = {r.colour: r.value for r in rows}
    start, steps = chain(values, level, rng, [1, 2, 3])
    who = start.capitalize()
    sentences = []
    for i, s in enumerate(steps):
        if s.name:
            event = (f"gets all of {s.name}'s stickers" if s.sign > 0
                     else f"gives away as many stickers as {s.name} has")
        else:
            event = f"buys {s.value} more" if s.sign > 0 else f"gives away {s.value}"
        sentences.append(f"{who if i == 0 else 'Then ' + start} {event}.")
    arithmetic, results = equations(values[start], steps, first=f"{start} {values[start]}")
    answer = results[-1]
    return Item(f"{STORY} " + " ".join(sentences) + f" How many stickers does {start} have now?",
                f"{reading(rows)} {arithmetic} Answer: {answer}", str(answer), "integer", facts={"table": values, "results": results})
