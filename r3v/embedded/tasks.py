"""The embedded benchmark: seeded, generated visual reasoning questions from several task families.

Families (each a module with the same functions: `scene`, `render`, `item`, `patch_classes`):
- `clevr_math` (r3v/embedded/shapes.py): CLEVR-Math-like shape counting with one + or - step;
- `chart` (r3v/embedded/charts.py): ChartQA-like bar charts, read / compare / add, relaxed scoring;
- `table` (r3v/embedded/tables.py): TabMWP-like rendered tables with word problems, some of them
  multiple choice answered by letter.
`data.embedded.families` picks the mix; questions cycle through the families, and within a family
through its question types, so every split has the same mix. With `questions_per_image` > 1,
consecutive questions (of the family's next question types) are about the same image. Rows are canonical question rows
(r3v/schema.py); the seed split carries gold rationales, the others answers only.
"""

from __future__ import annotations

import json
import random
from types import ModuleType

from r3v.config import EmbeddedTasksConfig
from r3v.embedded import charts, shapes, tables

FAMILIES: dict[str, ModuleType] = {m.NAME: m for m in (shapes, charts, tables)}
QTYPES = {name: m.QTYPES for name, m in FAMILIES.items()}


def families(cfg: EmbeddedTasksConfig) -> list[ModuleType]:
    """The family modules `cfg.families` names, in its order."""
    return [FAMILIES[n.strip()] for n in cfg.families.split(",") if n.strip()]  # validated by the config


def make_scene(fam: ModuleType, rng: random.Random, cfg: EmbeddedTasksConfig):
    if fam is shapes:
        return shapes.scene(rng, cfg.image_size, cfg.min_objects, cfg.max_objects)
    return fam.scene(rng, cfg.image_size)


def generate(split: str, n: int, cfg: EmbeddedTasksConfig) -> list[dict]:
    """`n` canonical question rows for `split`; the same (cfg, split) always gives the same rows."""
    rng = random.Random(f"{cfg.seed}:{split}")
    fams = families(cfg)
    per_image = cfg.questions_per_image
    rows = []
    for i in range(n):
        m, j = divmod(i, per_image)  # image m, its question j
        fam = fams[m % len(fams)]
        if j == 0:
            scene = make_scene(fam, rng, cfg)
        qtype = fam.QTYPES[((m // len(fams)) * per_image + j) % len(fam.QTYPES)]
        it = fam.item(scene, qtype, rng)
        rows.append({
            "id": f"{fam.PREFIX}-{split}-{i:05d}",
            "image": {"bytes": fam.render(scene, cfg.image_size), "path": None},
            "question": it.question,
            "answer": it.answer,
            "choices": it.choices,
            "rationale": it.rationale if split == "seed" else None,
            "metadata": json.dumps({"family": fam.NAME, "qtype": qtype, "answer_type": it.answer_type,
                                    **it.facts}),
        })
    return rows


def corpus(cfg: EmbeddedTasksConfig, n_per_type: int = 40) -> list[str]:
    """Text the embedded tokenizer is trained on: questions, options and rationales of every family
    and type (all families, whatever a run's mix, so one model build serves every mix)."""
    rng = random.Random("tokenizer")
    text = []
    for fam in FAMILIES.values():
        for qtype in fam.QTYPES * n_per_type:
            it = fam.item(make_scene(fam, rng, cfg), qtype, rng)
            text += [it.question, it.rationale] + (it.choices or [])
    return text
