"""Family `chart`: ChartQA-like bar charts, values to read and combine in a chain of steps.

Three or four bars, one per colour, stand on the bottom edge in fixed slots; a bar of value v is
v grid units tall (one unit is one vision patch, 8 px at the default size), so values are 1..7
(small numbers: the arithmetic must be learnable by a 5M model; the steps are the hard part). A question of level k starts from one bar and takes k steps, each
adding or subtracting another bar or a number. The gold rationale reads every bar left to right
first ("Bars: red 3, blue 7, green 2."), so a wrong reading is a perception error, then writes
one equation per step with what it reads: `red 3 + blue 7 = 10. 10 - 2 = 8. Answer: 8`.
Answers are exact integers: ChartQA's relaxed 5% would credit a neighbouring value once a chain
passes 20, a right answer from a wrong chain.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from r3v.embedded.bench.common import BACKGROUND, COLOURS, INK, Item, chain, equations, patch_grid, to_png

NAME = "chart"
PREFIX = "chart"
CLASSES = [f"{c} bar" for c in COLOURS]
UNIT = 1
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


def reading(bars: list[Bar]) -> str:
    """What the image shows, as every rationale (and the build's reading pretraining) writes it."""
    return "Bars: " + ", ".join(f"{b.colour} {b.value}" for b in bars) + "."


def item(bars: list[Bar], level: int, rng: random.Random) -> Item:
    """A level-k question: start from one bar, then k steps, each adding or subtracting another
    bar or a number: "Take the red bar. Add the blue bar. Subtract 20. What is the result?"."""
    values = {b.colour: b.value for b in bars}
    start, steps = chain(values, level, rng, [1, 2, 3])
    sentences = [f"Take the {start} bar."]
    for s in steps:
        verb = "Add" if s.sign > 0 else "Subtract"
        sentences.append(f"{verb} the {s.name} bar." if s.name else f"{verb} {s.value}.")
    arithmetic, results = equations(values[start], steps, first=f"{start} {values[start]}")
    answer = results[-1]
    return Item(" ".join(sentences) + " What is the result?", f"{reading(bars)} {arithmetic} Answer: {answer}",
                str(answer), "integer", facts={"bars": values, "results": results})
