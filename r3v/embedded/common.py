"""What the embedded task families share: the palette, the question item, PNG encoding, the patch grid."""

from __future__ import annotations

import io
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
    """The scene's ground truth (objects, bar values, table rows), kept in the row's metadata."""


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
