"""What the embedded task families share: the palette, the question item, PNG encoding, the patch grid."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
BACKGROUND = (250, 250, 250)
INK = (20, 20, 20)


@dataclass(frozen=True)
class Item:
    """One generated question about a scene."""

    question: str
    rationale: str
    """The gold rationale: what the scene shows, then the arithmetic, then `Answer: X`."""
    answer: str
    answer_type: str
    """`integer` (exact), `number` (relaxed, ChartQA) or `choice` (a letter among `choices`)."""
    choices: list[str] | None = None
    facts: dict = field(default_factory=dict)
    """The scene's ground truth (objects, bar values, table rows) and the gold chain's intermediate
    results (`results`, the last is the answer), kept in the row's metadata for step-level checks."""


def to_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def patch_grid(size: int, patch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cy, cx, labels) of a size/patch grid: each patch's centre in pixels, and a [g, g] label
    array filled with `background` for the family to paint its items into."""
    g = size // patch
    centres = np.arange(g) * patch + patch / 2
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    return cy, cx, np.full((g, g), "background", dtype=object)


@dataclass(frozen=True)
class Step:
    """One operation of a question's chain: add or subtract a value read from the image (`name`
    is what is read: a bar, a table row, the objects of a colour) or a number the question gives
    (`name` None)."""

    sign: int
    value: int
    name: str | None = None

    @property
    def op(self) -> str:
        return "+" if self.sign > 0 else "-"

    def operand(self) -> str:
        return f"{self.name} {self.value}" if self.name else str(self.value)


def equations(start: int, steps: list[Step], first: str | None = None) -> tuple[str, list[int]]:
    """The rationale's arithmetic, one equation per step, each naming what it reads and writing
    its intermediate result: `red 3 + blue 7 = 10. 10 - 2 = 8.` (`first`: how the
    starting value is written, default the number); returns (text, the results in order: the
    last is the answer)."""
    acc, parts, results = start, [], []
    left = first or str(start)
    for s in steps:
        acc += s.sign * s.value
        parts.append(f"{left} {s.op} {s.operand()} = {acc}.")
        results.append(acc)
        left = str(acc)
    return " ".join(parts), results


def chain(items: dict[str, int], level: int, rng: random.Random, literals: list[int]) -> tuple[str, list[Step]]:
    """A start item and `level` steps over `items` (name -> value): each step adds or subtracts an
    item not used yet (while any is left, else a number from `literals`), or, one time in four, a
    number; the running value never goes below 0."""
    names = list(items)
    start = rng.choice(names)
    unused = [n for n in names if n != start]
    rng.shuffle(unused)
    acc, steps = items[start], []
    for _ in range(level):
        if unused and rng.random() >= 0.25:
            name = unused.pop()
            value = items[name]
        else:
            name, value = None, rng.choice(literals)
        sign = -1 if acc - value >= 0 and rng.random() < 0.5 else +1
        steps.append(Step(sign, value, name))
        acc += sign * value
    return start, steps
