"""Family `chart`: ChartQA-like bar charts, values to read and compare.

Three or four bars, one per colour, stand on the bottom edge in fixed slots; a bar of value v is
v grid units tall (one unit is one vision patch, 8 px at the default size), and the chart's unit
is 10, so values are 10..70. Questions read a bar, compare two, add two, or name the tallest.
The gold rationale reads every bar left to right first ("Bars: red 30, blue 70."), so a wrong
reading is a perception error; numeric answers are judged with ChartQA's relaxed accuracy (5%).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from r3v.embedded.common import BACKGROUND, COLOURS, INK, Item, patch_grid, to_png

NAME = "chart"
PREFIX = "chart"
QTYPES = ("read", "difference", "sum", "tallest")
CLASSES = [f"{c} bar" for c in COLOURS]
UNIT = 10
MAX_UNITS = 7


@dataclass(frozen=True)
class Bar:
    colour: str
    slot: int  # left to right
    units: int

    @property
    def value(self) -> int:
        return self.units * UNIT


def scene(rng: random.Random, size: int) -> list[Bar]:
    """3-4 bars of distinct colours and distinct heights in slots left to right."""
    n = rng.randint(3, 4)
    colours = rng.sample(list(COLOURS), n)
    units = rng.sample(range(1, min(MAX_UNITS, size // _grid(size) - 1) + 1), n)
    slots = sorted(rng.sample(range(4), n))
    return [Bar(c, s, u) for c, s, u in zip(colours, slots, units)]


def _grid(size: int) -> int:
    return max(4, size // 8)


def _box(b: Bar, size: int) -> tuple[int, int, int, int]:
    g = _grid(size)
    x0 = (2 * b.slot + 1) * g
    return x0 + 1, size - b.units * g, x0 + g - 2, size - 1


def render(bars: list[Bar], size: int) -> bytes:
    img = Image.new("RGB", (size, size), BACKGROUND)
    d = ImageDraw.Draw(img)
    d.line([(0, size - 1), (size - 1, size - 1)], fill=INK)  # the axis
    for b in bars:
        d.rectangle(_box(b, size), fill=COLOURS[b.colour])
    return to_png(img)


def patch_classes(bars: list[Bar], size: int, patch: int) -> np.ndarray:
    cy, cx, out = patch_grid(size, patch)
    for b in bars:
        x0, y0, x1, y1 = _box(b, size)
        out[(cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)] = f"{b.colour} bar"
    return out


def item(bars: list[Bar], qtype: str, rng: random.Random) -> Item:
    reading = "Bars: " + ", ".join(f"{b.colour} {b.value}" for b in bars) + "."
    facts = {"bars": {b.colour: b.value for b in bars}}
    if qtype == "read":
        b = rng.choice(bars)
        return Item(f"What is the value of the {b.colour} bar?",
                    f"{reading} Answer: {b.value}", str(b.value), "number", facts=facts)
    if qtype == "difference":
        hi, lo = sorted(rng.sample(bars, 2), key=lambda b: -b.units)
        d = hi.value - lo.value
        return Item(f"How much larger is the {hi.colour} bar than the {lo.colour} bar?",
                    f"{reading} {hi.value} - {lo.value} = {d}. Answer: {d}", str(d), "number", facts=facts)
    if qtype == "sum":
        a, b = rng.sample(bars, 2)
        s = a.value + b.value
        return Item(f"What is the sum of the {a.colour} and {b.colour} bars?",
                    f"{reading} {a.value} + {b.value} = {s}. Answer: {s}", str(s), "number", facts=facts)
    if qtype == "tallest":
        top = max(bars, key=lambda b: b.units)
        return Item("Which bar is the tallest?", f"{reading} Tallest: {top.colour}. Answer: {top.colour}",
                    top.colour, "text", facts=facts)
    raise ValueError(f"unknown chart question type {qtype!r}")
