"""Family `chart`: ChartQA-like bar charts with value labels, values to read and combine in a chain of steps.

Three or four bars, one per colour, stand on the bottom edge in fixed slots, each one vision patch
wide; a bar of value v is 6v pixels tall, and its value is printed above the chart in the slot's
top cell with the 5x7 bitmap font, as ChartQA's charts print value labels (perception by design:
the value is one patch-aligned glyph, drawn as the table draws its numbers, instead of a height
to count across stacked patches, which the 5M model could not read). Values are 1..9. A question
of level k starts from a two-digit number the question gives and takes k steps, each adding or
subtracting a bar or a number. The gold rationale reads every bar left to right first ("Bars: red
3, blue 7, green 2."), so a wrong reading is a perception error, then writes one equation per
step with what it reads: `35 + red 3 = 38. 38 - blue 7 = 31. Answer: 31`. Answers are exact
integers: ChartQA's relaxed 5% would credit a neighbouring value, a right answer from a wrong chain.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from r3v.embedded.bench.common import BACKGROUND, COLOURS, INK, Item, chain, digit_cell, equations, patch_grid, to_png

NAME = "chart"
PREFIX = "chart"
CLASSES = [f"{c} bar" for c in COLOURS]
"""Patch classes of the bars; their labels are the table's `digit d` classes (the same glyphs)."""
UNIT = 6
"""Pixels of bar height per unit of value at 64 px (scaled with the image)."""
MAX_VALUE = 9


@dataclass(frozen=True)
class Bar:
    colour: str
    slot: int  # left to right
    value: int


def scene(rng: random.Random, size: int) -> list[Bar]:
    """3-4 bars of distinct colours and distinct values 1..9 in slots left to right."""
    n = rng.randint(3, 4)
    colours = rng.sample(list(COLOURS), n)
    values = rng.sample(range(1, MAX_VALUE + 1), n)
    slots = sorted(rng.sample(range(4), n))
    return [Bar(c, s, v) for c, s, v in zip(colours, slots, values)]


def _grid(size: int) -> int:
    return max(8, size // 8)


def _column(b: Bar, size: int) -> int:
    """The x of the slot's column: slots on every other grid column, 1, 3, 5, 7."""
    return (2 * b.slot + 1) * _grid(size)


def _box(b: Bar, size: int) -> tuple[int, int, int, int]:
    g, x0 = _grid(size), _column(b, size)
    height = b.value * UNIT * size // 64
    return x0 + 1, size - height, x0 + g - 2, size - 1


def render(bars: list[Bar], size: int) -> bytes:
    img = Image.new("RGB", (size, size), BACKGROUND)
    d = ImageDraw.Draw(img)
    d.line([(0, size - 1), (size - 1, size - 1)], fill=INK)  # the axis
    for b in bars:
        d.rectangle(_box(b, size), fill=COLOURS[b.colour])
        digit_cell(d, _column(b, size), 0, b.value, _grid(size))  # the value label, in the top cell
    return to_png(img)


def patch_classes(bars: list[Bar], size: int, patch: int) -> np.ndarray:
    cy, cx, out = patch_grid(size, patch)
    for b in bars:
        x0, y0, x1, y1 = _box(b, size)
        out[(cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)] = f"{b.colour} bar"
        label = (_column(b, size) + _grid(size) // 2) // patch
        if label < out.shape[1]:
            out[0, label] = f"digit {b.value}"
    return out


def reading(bars: list[Bar]) -> str:
    """What the image shows, as every rationale (and the build's reading pretraining) writes it."""
    return "Bars: " + ", ".join(f"{b.colour} {b.value}" for b in bars) + "."


def values(bars: list[Bar]) -> dict[str, int]:
    """What a step may read: each bar's value."""
    return {b.colour: b.value for b in bars}


def item(bars: list[Bar], level: int, rng: random.Random) -> Item:
    """A level-k question: start from a number, then k steps, each adding or subtracting a bar
    or a number: "Start from 35. Add the red bar. Subtract 2. What is the result?"."""
    vals = values(bars)
    start, steps = chain(vals, level, rng)
    sentences = [f"Start from {start}."]
    for s in steps:
        verb = "Add" if s.sign > 0 else "Subtract"
        sentences.append(f"{verb} the {s.name} bar." if s.name else f"{verb} {s.value}.")
    arithmetic, results = equations(start, steps)
    answer = results[-1]
    return Item(" ".join(sentences) + " What is the result?", f"{reading(bars)} {arithmetic} Answer: {answer}",
                str(answer), "integer", facts={"bars": vals, "start": start, "results": results})
