"""Family `clevr_math`: CLEVR-Math-like questions, coloured shapes on a small image, a chain of steps.

A question of level k is k operations on the scene's objects, as CLEVR-Math writes them:
"Subtract all red objects. Add 2 blue squares. Subtract all green objects. How many objects are
left?". Every question needs perception (how many objects, how many of each colour named) and
k additions or subtractions. The gold rationale lists the objects in reading order
(top-to-bottom bands, then left to right), then the total, then one equation per step naming
what it counts and writing the intermediate result:
`Objects: red circle, blue square, red triangle. Total: 3. 3 - red 2 = 1. 1 + 2 = 3. Answer: 3`.
A wrong listing is a perception error, the kind self-refine and self-select are meant to fix;
each row keeps its true objects in `metadata` so a step-level check stays possible.
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


def make_question(objs: list[Obj], level: int, rng: random.Random) -> tuple[str, str, list[int]]:
    """A CLEVR-Math-like chain of `level` operations: "Subtract all red objects." (minus the
    objects of a colour, each colour at most once and at most three) or "Add 2 blue squares."
    (plus a number the question gives, of a colour no later step subtracts, so the order of
    steps never changes what a step counts). Colours in the scene are subtracted before absent
    ones. Returns (question, gold rationale, the intermediate results)."""
    n_sub = min(3, sum(rng.random() < 0.6 for _ in range(level)))
    kinds = ["sub"] * n_sub + ["add"] * (level - n_sub)
    rng.shuffle(kinds)
    present = list(dict.fromkeys(o.colour for o in objs))  # colours in the scene first: "red 0" is rarely asked
    absent = [c for c in COLOURS if c not in present]
    sub_colours = iter((rng.sample(present, len(present)) + rng.sample(absent, len(absent)))[:n_sub])
    plan = [next(sub_colours) if k == "sub" else None for k in kinds]
    total, steps, sentences = len(objs), [], []
    for i, colour in enumerate(plan):
        if colour is not None:
            k = sum(o.colour == colour for o in objs)
            steps.append(Step(-1, k, colour))
            sentences.append(f"Subtract all {colour} objects.")
        else:
            later = {c for c in plan[i + 1:] if c}
            col = rng.choice([c for c in COLOURS if c not in later])
            add, shp = rng.randint(1, 3), rng.choice(SHAPES)
            steps.append(Step(+1, add))
            sentences.append(f"Add {add} {col} {_plural(shp) if add > 1 else shp}.")
    arithmetic, results = equations(total, steps)
    answer = results[-1]
    listing = reading(objs)
    question = " ".join(sentences) + (" How many objects are left?" if n_sub else " How many objects are there now?")
    return question, f"{listing} Total: {total}. {arithmetic} Answer: {answer}", results


def reading(objs: list[Obj]) -> str:
    """What the image shows, as every rationale (and the build's reading pretraining) writes it."""
    return "Objects: " + ", ".join(o.name for o in objs) + "."


def scene(rng: random.Random, size: int, min_objects: int = 2, max_objects: int = 6) -> list[Obj]:
    return place_objects(rng, size, rng.randint(min_objects, max_objects))


def item(objs: list[Obj], level: int, rng: random.Random) -> Item:
    question, rationale, results = make_question(objs, level, rng)
    return Item(question, rationale, str(results[-1]), "integer",
                facts={"objects": [o.name for o in objs], "results": results})


def patch_classes(objs: list[Obj], size: int, patch: int) -> np.ndarray:
    """[g, g] class names: the object whose box holds the patch centre, else background."""
    cy, cx, out = patch_grid(size, patch)
    for o in objs:
        out[(np.abs(cx - o.x) <= o.r) & (np.abs(cy - o.y) <= o.r)] = o.name
    return out
