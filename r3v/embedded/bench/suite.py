"""The embedded benchmark's suite: seeded, generated visual reasoning questions from several question families.

Families (each a module with the same functions: `scene`, `render`, `item`, `patch_classes`):
- `clevr_math` (r3v/embedded/bench/shapes.py): CLEVR-Math-like shapes, "Subtract all red objects. Add 2
  blue squares. ... How many objects are left?";
- `chart` (r3v/embedded/bench/charts.py): ChartQA-like bar charts, bars added and subtracted in turn;
- `table` (r3v/embedded/bench/tables.py): TabMWP-like rendered tables with multi-step word problems.

Every question has a difficulty level k = its number of reasoning steps (operations over values
read from the image), and its gold rationale writes every value it reads and every intermediate
result, so a right answer from a wrong chain is rare. The splits are easy to hard, as in
self-improvement from easy instances (Lee et al., ICML 2025): the seed split (gold rationales, the
stand-in for the paper's distilled warm-up) has `seed_levels` (1-2), the answer-only train pool
`train_levels` (1-4) and the test split `test_levels` (1-5: in range and beyond). Questions cycle
through the families, and within a family through the split's levels, so every split has an even
mix. With `questions_per_image` > 1, consecutive questions (at the next levels) are about the same
image. Rows are canonical question rows (r3v/schema.py) whose metadata has `family` and `level`;
the seed split carries gold rationales, the others answers only.
"""

from __future__ import annotations

import json
import random
from types import ModuleType

from r3v.config import QUESTION_FAMILIES, EmbeddedBenchConfig, parse_levels
from r3v.embedded.bench import charts, shapes, tables

_MODULES = {m.NAME: m for m in (shapes, charts, tables)}
FAMILIES: dict[str, ModuleType] = {name: _MODULES[name] for name in QUESTION_FAMILIES}
"""The families the config declares (`r3v.config.QUESTION_FAMILIES`, what `data.embedded.families`
is checked against), each with the module that draws it."""


def families(cfg: EmbeddedBenchConfig) -> list[ModuleType]:
    """The family modules `cfg.families` names, in its order."""
    return [FAMILIES[n.strip()] for n in cfg.families.split(",") if n.strip()]  # validated by the config


def make_scene(fam: ModuleType, rng: random.Random, cfg: EmbeddedBenchConfig):
    if fam is shapes:
        return shapes.scene(rng, cfg.image_size, cfg.min_objects, cfg.max_objects)
    return fam.scene(rng, cfg.image_size)


def split_levels(split: str, cfg: EmbeddedBenchConfig) -> list[int]:
    """The difficulty levels (reasoning steps) questions of `split` are drawn from."""
    spec = {"seed": cfg.seed_levels, "test": cfg.test_levels}.get(split, cfg.train_levels)
    return parse_levels(spec)  # validated by the config


def generate(split: str, n: int, cfg: EmbeddedBenchConfig) -> list[dict]:
    """`n` canonical question rows for `split`; the same (cfg, split) always gives the same rows."""
    rng = random.Random(f"{cfg.seed}:{split}")
    fams = families(cfg)
    levels = split_levels(split, cfg)
    per_image = cfg.questions_per_image
    rows = []
    for i in range(n):
        m, j = divmod(i, per_image)  # image m, its question j
        fam = fams[m % len(fams)]
        if j == 0:
            scene = make_scene(fam, rng, cfg)
        level = levels[((m // len(fams)) * per_image + j) % len(levels)]
        it = fam.item(scene, level, rng)
        rows.append({
            "id": f"{fam.PREFIX}-{split}-{i:05d}",
            "image": {"bytes": fam.render(scene, cfg.image_size), "path": None},
            "question": it.question,
            "answer": it.answer,
            "choices": it.choices,
            "rationale": it.rationale if split == "seed" else None,
            "metadata": json.dumps({"family": fam.NAME, "level": level, "answer_type": it.answer_type,
                                    **it.facts}),
        })
    return rows


def corpus(cfg: EmbeddedBenchConfig, n_per_level: int = 40, max_level: int = 8) -> list[str]:
    """Text the embedded tokenizer is trained on: questions and rationales of every family at
    levels 1..`max_level` (all families and levels, whatever a run's mix, so one model build
    serves every mix)."""
    rng = random.Random("tokenizer")
    text = []
    for fam in FAMILIES.values():
        for level in list(range(1, max_level + 1)) * n_per_level:
            it = fam.item(make_scene(fam, rng, cfg), level, rng)
            text += [it.question, it.rationale] + (it.choices or [])
    return text
