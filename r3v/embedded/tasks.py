"""Seeded CLEVR-Math-like questions: coloured shapes on a small image, one arithmetic step.

Every question needs perception (which objects, what colour and shape), counting and, for most
types, one addition or subtraction. The gold rationale lists the objects in reading order
(top-to-bottom bands, then left to right) before counting: the listing is what makes the task
learnable for a tiny model, and where it is wrong the error is a perception error, the kind
self-refine and self-select are meant to fix. Each row keeps its true objects in `metadata`
so a step-level check of the listing stays possible.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from r3v.config import EmbeddedTasksConfig

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
QTYPES = ("count_all", "count_colour", "subtract_shape", "subtract_colour", "add_colour", "add_total")
BACKGROUND = (250, 250, 250)


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
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


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


def generate(split: str, n: int, cfg: EmbeddedTasksConfig) -> list[dict]:
    """`n` canonical question rows for `split`; the same (cfg, split) always gives the same rows."""
    rng = random.Random(f"{cfg.seed}:{split}")
    rows = []
    for i in range(n):
        objs = place_objects(rng, cfg.image_size, rng.randint(cfg.min_objects, cfg.max_objects))
        qtype = QTYPES[i % len(QTYPES)]
        question, rationale, answer = make_question(objs, qtype, rng)
        rows.append({
            "id": f"clevrmath-{split}-{i:05d}",
            "image": {"bytes": render(objs, cfg.image_size), "path": None},
            "question": question,
            "answer": str(answer),
            "choices": None,
            "rationale": rationale if split == "seed" else None,
            "metadata": json.dumps({"family": "clevr_math", "qtype": qtype, "answer_type": "integer",
                                    "objects": [o.name for o in objs]}),
        })
    return rows


def corpus(cfg: EmbeddedTasksConfig, n: int = 600) -> list[str]:
    """Text the embedded tokenizer is trained on: questions and rationales of every type."""
    rows = generate("tokenizer", n, cfg)
    return [r["question"] for r in rows] + [
        make_question(place_objects(random.Random(i), cfg.image_size, 3), q, random.Random(i))[1]
        for i, q in enumerate(QTYPES * 20)
    ]
