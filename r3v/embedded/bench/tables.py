"""Family `table`: TabMWP-like small rendered tables with a multi-step word problem.

The image is a table of three or four rows; each row is a colour swatch (a child) and a
one-digit number drawn with the 5x7 bitmap font (`common.digit_cell`), each in its own vision
patch (perception by design: every fact a chain needs is one patch-aligned cell of a small fixed
alphabet). Rows are separated by rules. A question of level k follows Ann's stickers from a
two-digit number the question gives through k events, each adding or taking away a child's count
from the table or a number the question gives. The gold rationale copies the table first
("Table: red 3, blue 7, green 2."), then writes one equation per event with what it reads and
the running total: `35 + red 3 = 38. 38 - 2 = 36. Answer: 36`. (TabMWP's multiple-choice items
are not part of the levelled benchmark: a guess among four letters is right a quarter of the time.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from r3v.embedded.bench.common import BACKGROUND, COLOURS, Item, chain, digit_cell, equations, to_png

NAME = "table"
PREFIX = "table"
CLASSES = [f"{c} swatch" for c in COLOURS] + [f"digit {d}" for d in range(10)]
STORY = "The table shows how many stickers each child has."


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
        digit_cell(d, dx, dy, r.value, g)
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


def values(rows: list[Row]) -> dict[str, int]:
    """What a step may read: each child's count."""
    return {r.colour: r.value for r in rows}


def item(rows: list[Row], level: int, rng: random.Random) -> Item:
    """A level-k word problem: Ann's stickers, then k events, each adding or taking away a
    child's count or a number: "Ann has 35 stickers. Ann gets all of blue's stickers. Then Ann
    gives away 2. How many stickers does Ann have now?"."""
    vals = values(rows)
    start, steps = chain(vals, level, rng)
    sentences = [f"Ann has {start} stickers."]
    for i, s in enumerate(steps):
        if s.name:
            event = (f"gets all of {s.name}'s stickers" if s.sign > 0
                     else f"gives away as many stickers as {s.name} has")
        else:
            event = f"buys {s.value} more" if s.sign > 0 else f"gives away {s.value}"
        sentences.append(f"{'Ann' if i == 0 else 'Then Ann'} {event}.")
    arithmetic, results = equations(start, steps)
    answer = results[-1]
    return Item(f"{STORY} " + " ".join(sentences) + " How many stickers does Ann have now?",
                f"{reading(rows)} {arithmetic} Answer: {answer}", str(answer), "integer",
                facts={"table": vals, "start": start, "results": results})
