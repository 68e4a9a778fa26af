"""Family `clevr_math`: CLEVR-Math-like questions, coloured shapes on a small image, a chain of steps.

Objects sit on a 4 x 4 grid of slots, each slot one vision patch (every other patch row and
column), each object drawn inside its patch: perception by design, as the table's cells are (an
object straddling patches, or placed anywhere inside one, made the listing's order and neighbours
depend on where it sat: the 5M model read 0.04 of such scenes). A question of level k is k
operations, as CLEVR-Math writes them, on a box that holds a two-digit number of objects the
question gives: the first puts the image's objects in ("A box holds 35 objects. Add the objects
in the image."), each later one is "Subtract all red objects." (minus the image's objects of a
colour, each colour at most once and at most three) or "Add 2 blue squares." (plus a number the
question gives). The gold rationale lists the objects in reading order (slot rows top to bottom,
then left to right), then one equation per step naming what it counts:
`Objects: red circle, blue square, red triangle. 35 + total 3 = 38. 38 - red 2 = 36. Answer: 36`.
Each row keeps its true objects in `metadata` so a step-level check stays possible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from r3v.embedded.bench.common import BACKGROUND, COLOURS, Item, Step, equations, patch_grid, to_png

NAME = "clevr_math"
PREFIX = "clevrmath"
SHAPES = ("circle", "square", "triangle")
CLASSES = [f"{c} {s}" for c in COLOURS for s in SHAPES]
"""Patch classes for the vision tower's build-time pretraining (r3v/embedded/model/vision.py)."""
SLOTS = 4
"""Slots per row and column: a 4 x 4 grid on every other patch."""
TOTAL = "total"
"""How a rationale names the count of all objects (`35 + total 3 = 38.`)."""


@dataclass(frozen=True)
class Obj:
    colour: str
    shape: str
    row: int  # slot row, top to bottom
    col: int  # slot column, left to right

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


def _plural(shape: str) -> str:
    return shape + "s"


def _cell(size: int) -> int:
    return max(8, size // 8)


def _origin(o: Obj, size: int) -> tuple[int, int]:
    """(x, y) of the top-left corner of the object's patch: slots on patches 1, 3, 5, 7."""
    g = _cell(size)
    return (2 * o.col + 1) * g, (2 * o.row + 1) * g


def place_objects(rng: random.Random, n: int) -> list[Obj]:
    """`n` objects of random colour and shape in distinct slots, in reading order."""
    slots = sorted(rng.sample(range(SLOTS * SLOTS), n))
    return [Obj(rng.choice(list(COLOURS)), rng.choice(SHAPES), *divmod(s, SLOTS)) for s in slots]


def render(objs: list[Obj], size: int) -> bytes:
    g = _cell(size)
    img = Image.new("RGB", (size, size), BACKGROUND)
    d = ImageDraw.Draw(img)
    for o in objs:
        x, y = _origin(o, size)
        c = COLOURS[o.colour]
        box = (x + 1, y + 1, x + g - 2, y + g - 2)
        if o.shape == "circle":
            d.ellipse(box, fill=c)
        elif o.shape == "square":
            d.rectangle(box, fill=c)
        else:
            d.polygon([(x + g // 2, y + 1), (x + 1, y + g - 2), (x + g - 2, y + g - 2)], fill=c)
    return to_png(img)


def counts(objs: list[Obj]) -> dict[str, int]:
    """What a step may read: the total, and the count of each colour in the image."""
    out = {TOTAL: len(objs)}
    for o in objs:
        out[o.colour] = out.get(o.colour, 0) + 1
    return out


def make_question(objs: list[Obj], level: int, rng: random.Random) -> tuple[str, str, int, list[int]]:
    """A CLEVR-Math-like chain of `level` operations on a box of a two-digit number of objects:
    first the image's objects go in, then "Subtract all red objects." (each colour at most once
    and at most three, colours in the scene before absent ones) or "Add 2 blue squares." (of a
    colour no later step subtracts, so the order of steps never changes what a step counts).
    Returns (question, gold rationale, the start, the intermediate results)."""
    from r3v.embedded.bench.common import CEILING, START

    start = rng.randint(*START)
    n_sub = min(3, sum(rng.random() < 0.6 for _ in range(level - 1)))
    kinds = ["sub"] * n_sub + ["add"] * (level - 1 - n_sub)
    rng.shuffle(kinds)
    present = list(dict.fromkeys(o.colour for o in objs))  # colours in the scene first: "red 0" is rarely asked
    absent = [c for c in COLOURS if c not in present]
    sub_colours = iter((rng.sample(present, len(present)) + rng.sample(absent, len(absent)))[:n_sub])
    plan = [next(sub_colours) if k == "sub" else None for k in kinds]
    n = counts(objs)
    acc = start + len(objs)
    steps, sentences = [Step(+1, len(objs), TOTAL)], [f"A box holds {start} objects. Add the objects in the image."]
    for i, colour in enumerate(plan):
        if colour is not None:
            k = n.get(colour, 0)
            steps.append(Step(-1, k, colour))
            sentences.append(f"Subtract all {colour} objects.")
            acc -= k
        else:
            later = {c for c in plan[i + 1:] if c}
            col = rng.choice([c for c in COLOURS if c not in later])
            add, shp = rng.randint(1, max(1, min(9, CEILING - acc))), rng.choice(SHAPES)
            steps.append(Step(+1, add))
            sentences.append(f"Add {add} {col} {_plural(shp) if add > 1 else shp}.")
            acc += add
    arithmetic, results = equations(start, steps)
    answer = results[-1]
    question = " ".join(sentences) + " How many objects are in the box?"
    return question, f"{reading(objs)} {arithmetic} Answer: {answer}", start, results


def reading(objs: list[Obj]) -> str:
    """What the image shows, as every rationale (and the build's reading pretraining) writes it."""
    return "Objects: " + ", ".join(o.name for o in objs) + "."


def values(objs: list[Obj]) -> dict[str, int]:
    return counts(objs)


def scene(rng: random.Random, size: int, min_objects: int = 2, max_objects: int = 6) -> list[Obj]:
    return place_objects(rng, rng.randint(min_objects, max_objects))


def item(objs: list[Obj], level: int, rng: random.Random) -> Item:
    question, rationale, start, results = make_question(objs, level, rng)
    return Item(question, rationale, str(results[-1]), "integer",
                facts={"objects": [o.name for o in objs], "start": start, "results": results})


def patch_classes(objs: list[Obj], size: int, patch: int) -> np.ndarray:
    """[g, g] class names: each object's patch, else background."""
    _, _, out = patch_grid(size, patch)
    g = _cell(size)
    for o in objs:
        x, y = _origin(o, size)
        r, c = (y + g // 2) // patch, (x + g // 2) // patch
        if r < out.shape[0] and c < out.shape[1]:
            out[r, c] = o.name
    return out
