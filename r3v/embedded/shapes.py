"""Family `clevr_math`: CLEVR-Math-like questions, coloured shapes on a small image, one arithmetic step.

Every question needs perception (which objects, what colour and shape), counting and, for most
types, one addition or subtraction. The gold rationale lists the objects in reading order
(top-to-bottom bands, then left to right) before counting: the listing is what makes the task
learnable for a tiny model, and where it is wrong the error is a perception error, the kind
self-refine and self-select are meant to fix. Each row keeps its true objects in `metadata`
so a step-level check of the listing stays possible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from r3v.embedded.common import BACKGROUND, COLOURS, Item, patch_grid, to_png

NAME = "clevr_math"
PREFIX = "clevrmath"
SHAPES = ("circle", "square", "triangle")
QTYPES = ("count_all", "count_colour", "subtract_shape", "subtract_colour", "add_colour", "add_total")
CLASSES = [f"{c} {s}" for c in COLOURS for s in SHAPES]
"""Patch classes for the vision tower's build-time pretraining (r3v/embedded/vision.py)."""


@dataclass(frozen=True)
class Obj:
    colour: str
    shape: str
    x: int  # centre
    y: int
    r: int  # half size

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


def _plural(shape: str) -> str:
    return shape + "s"


def place_objects(rng: random.Random, size: int, n: int) -> list[Obj]:
    r = max(4, size // 11)
    objs: list[Obj] = []
    tries = 0
    while len(objs) < n:
        tries += 1
        if tries > 2000:  # very crowded: restart with the same count
            objs, tries = [], 0
            continue
        x = rng.randint(r + 1, size - r - 2)
        y = rng.randint(r + 1, size - r - 2)
        if all(abs(x - o.x) > 2 * r + 2 or abs(y - o.y) > 2 * r + 2 for o in objs):
            objs.append(Obj(rng.choice(list(COLOURS)), rng.choice(SHAPES), x, y, r))
    band = size // 4
    return sorted(objs, key=lambda o: (o.y // band, o.x))


def render(objs: list[Obj], size: int) -> bytes:
    img = Image.new("RGB", (size, size), BACKGROUND)
    d = ImageDraw.Draw(img)
    for o in objs:
        c = COLOURS[o.colour]
        box = (o.x - o.r, o.y - o.r, o.x + o.r, o.y + o.r)
        if o.shape == "circle":
            d.ellipse(box, fill=c)
        elif o.shape == "square":
            d.rectangle(box, fill=c)
        else:
            d.polygon([(o.x, o.y - o.r), (o.x - o.r, o.y + o.r), (o.x + o.r, o.y + o.r)], fill=c)
    return to_png(img)


def make_question(objs: list[Obj], qtype: str, rng: random.Random) -> tuple[str, str, int]:
    """Returns (question, gold rationale, answer)."""
    listing = "Objects: " + ", ".join(o.name for o in objs) + "."
    total = len(objs)
    if qtype == "count_all":
        return "How many objects are there?", f"{listing} Total: {total}. Answer: {total}", total
    if qtype == "count_colour":
        col = rng.choice([o.colour for o in objs] + list(COLOURS))
        k = sum(o.colour == col for o in objs)
        return (f"How many {col} objects are there?",
                f"{listing} {col.capitalize()}: {k}. Answer: {k}", k)
    if qtype == "subtract_shape":
        shp = rng.choice([o.shape for o in objs] + list(SHAPES))
        k = sum(o.shape == shp for o in objs)
        return (f"Subtract all {_plural(shp)}. How many objects are left?",
                f"{listing} Total: {total}. {_plural(shp).capitalize()}: {k}. {total} - {k} = {total - k}. "
                f"Answer: {total - k}", total - k)
    if qtype == "subtract_colour":
        col = rng.choice([o.colour for o in objs] + list(COLOURS))
        k = sum(o.colour == col for o in objs)
        return (f"Subtract all {col} objects. How many objects are left?",
                f"{listing} Total: {total}. {col.capitalize()}: {k}. {total} - {k} = {total - k}. "
                f"Answer: {total - k}", total - k)
    add = rng.randint(1, 3)
    col, shp = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    thing = f"{add} {col} {_plural(shp) if add > 1 else shp}"
    if qtype == "add_colour":
        k = sum(o.colour == col for o in objs)
        return (f"Add {thing}. How many {col} objects are there?",
                f"{listing} {col.capitalize()}: {k}. {k} + {add} = {k + add}. Answer: {k + add}", k + add)
    if qtype == "add_total":
        return (f"Add {thing}. How many objects are there?",
                f"{listing} Total: {total}. {total} + {add} = {total + add}. Answer: {total + add}", total + add)
    raise ValueError(f"unknown question type {qtype!r}")


def scene(rng: random.Random, size: int, min_objects: int = 2, max_objects: int = 6) -> list[Obj]:
    return place_objects(rng, size, rng.randint(min_objects, max_objects))


def item(objs: list[Obj], qtype: str, rng: random.Random) -> Item:
    question, rationale, answer = make_question(objs, qtype, rng)
    return Item(question, rationale, str(answer), "integer", facts={"objects": [o.name for o in objs]})


def patch_classes(objs: list[Obj], size: int, patch: int) -> np.ndarray:
    """[g, g] class names: the object whose box holds the patch centre, else background."""
    cy, cx, out = patch_grid(size, patch)
    for o in objs:
        out[(np.abs(cx - o.x) <= o.r) & (np.abs(cy - o.y) <= o.r)] = o.name
    return out
