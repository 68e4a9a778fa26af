"""An experiment repeated over seeds: each arm's accuracy as mean ± 95% interval, and paired tests per seed.

`r3v experiment --seeds 0 1 2` runs the whole comparison once per seed into `<experiment>/seed=<s>/`
(an ordinary experiment folder each, with its own results.md), changing every seed a result
depends on: the data (`data.embedded.seed` + s: other images and questions), sampling and
training (`run.seed` + s: rollout and evaluation samples, data order, LoRA init, the seed
model's training). Seed 0 is the config as given. Then this module writes the summary beside
them:

    <run.root>/<experiment>/
      summary.md  summary.parquet           per arm and iteration, over seeds
      summary_accuracy.png  summary_levels.png
      seed=<s>/                              one experiment per seed (results.md, arms/...)

What the summary reports, per arm: pass@1 on the whole test split and on the *hard* levels (the
test levels the seed split has no gold rationales for: the easy-to-hard claim), per iteration and
per level; maj@N, select@N and oracle@N; the share of the pool's positives that are lucky (right
answer, wrong reading or wrong intermediate result: `r3v errors`' step-level check); each final
model against the seed model and R3V against STaR and the canary, question by question with an
exact McNemar test, per seed. The interval is Student's t over seeds (mean ± t_{0.975, n-1} · s/√n):
with 3 seeds it is wide (t = 4.30), which is the point of printing it.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from r3v.analysis.error_kinds import breakdown
from r3v.analysis.experiment import SEED_ARM, paired
from r3v.analysis.report import markdown_table
from r3v.config import Config, parse_levels
from r3v.store import Store

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        15: 2.131, 20: 2.086, 30: 2.042}
"""Student's t, two-sided 95%, by degrees of freedom (between the listed ones the next lower df's
value is used: a slightly wider interval, never a narrower one)."""


def seed_dir(exp_dir: str | Path, seed: int) -> Path:
    return Path(exp_dir) / f"seed={int(seed)}"


def seed_overrides(cfg: Config, seed: int) -> list[str]:
    """The overrides that make replicate `seed` of `cfg`: other data, samples and training."""
    return [f"run.seed={cfg.run.seed + seed}", f"data.embedded.seed={cfg.data.embedded.seed + seed}"]


def interval(values: list[float]) -> tuple[float | None, float | None]:
    """(mean, half width of the 95% t interval); the half width is None for fewer than 2 values."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    mean = statistics.fmean(vals)
    if len(vals) < 2:
        return mean, None
    df = len(vals) - 1
    t = T975[max(k for k in T975 if k <= df)]
    return mean, t * statistics.stdev(vals) / math.sqrt(len(vals))


def fmt(values: list[float]) -> str:
    """`0.412 ± 0.031` (or the mean alone for one value; – for none)."""
    mean, half = interval(values)
    if mean is None:
        return "–"
    return f"{mean:.3f}" if half is None else f"{mean:.3f} ± {half:.3f}"


def hard_levels(cfg: Config) -> list[int]:
    """Test levels beyond the seed split's: what the seed model was never shown how to do."""
    seed = set(parse_levels(cfg.data.embedded.seed_levels))
    return [lv for lv in parse_levels(cfg.data.embedded.test_levels) if lv > max(seed)]


# -- what one arm of one seed measured ---------------------------------------------------

LEVEL_SQL = """
    SELECT e.iteration, try_cast(json_extract_string(q.metadata, '$.level') AS INTEGER) AS level,
           e.question_id, e.correct
    FROM src_eval e JOIN questions q ON q.id = e.question_id AND q.split = 'test'
    WHERE e.strategy = 'greedy'"""


def arm_facts(arm_dir: Path, hard: list[int]) -> dict:
    """{iteration: {pass_at_1, hard_pass_at_1, maj/select/oracle_at_n, by_level, lucky_share, greedy}}
    of one arm folder (greedy: question id -> right, for the paired tests)."""
    store = Store(arm_dir)
    out: dict[int, dict] = {}
    for m in store.query("SELECT * FROM metrics").to_pylist():
        out[m["iteration"]] = {k: m.get(k) for k in ("pass_at_1", "maj_at_n", "oracle_at_n", "select_at_n")}
    rows = store.query(LEVEL_SQL).to_pylist()
    for it, facts in out.items():
        mine = [r for r in rows if r["iteration"] == it]
        levels = sorted({r["level"] for r in mine if r["level"] is not None})
        facts["by_level"] = {lv: statistics.fmean(r["correct"] for r in mine if r["level"] == lv) for lv in levels}
        hard_rows = [r["correct"] for r in mine if r["level"] in hard]
        facts["hard_pass_at_1"] = statistics.fmean(hard_rows) if hard_rows else None
        facts["greedy"] = {r["question_id"]: bool(r["correct"]) for r in mine}
        facts["lucky_share"] = lucky_share(store, it) if it > 0 else None
    return out


def lucky_share(store: Store, iteration: int) -> float | None:
    """Share of iteration `iteration`'s judged positives that are lucky (step-level check): from
    `r3v errors`' breakdown of the pool, where a positive is either `right` or `lucky`."""
    rows = [r for r in breakdown(store, iteration, "samples") if r["family"] == "all"]
    if not rows or not rows[0]["right"] + rows[0]["lucky"]:
        return None
    return rows[0]["lucky"] / (rows[0]["right"] + rows[0]["lucky"])


def scaling_facts(arm_dir: Path) -> list[dict]:
    return Store(arm_dir).query("SELECT n, pass_at_1, maj_at_n, oracle_at_n, select_at_n FROM scaling").to_pylist()


# -- the summary -------------------------------------------------------------------------


def collect(exp_dir: Path, seeds: list[int], arms: list[str], hard: list[int]) -> dict:
    """{seed: {arm: arm_facts}} and scaling {seed: {arm: rows}} for every finished arm."""
    facts, scaling = {}, {}
    for s in seeds:
        d = seed_dir(exp_dir, s) / "arms"
        facts[s] = {a: arm_facts(d / a, hard) for a in arms if (d / a / "config.yaml").exists()}
        scaling[s] = {a: scaling_facts(d / a) for a in facts[s]}
    return {"facts": facts, "scaling": scaling}


def _final(arm_facts_: dict) -> dict | None:
    return arm_facts_[max(arm_facts_)] if arm_facts_ else None


def _paired_rows(facts: dict, seeds: list[int], arms: list[str]) -> list[dict]:
    pairs = [(a, SEED_ARM) for a in arms if a != SEED_ARM]
    pairs += [(a, b) for a, b in (("r3v", "star"), ("r3v", "r3v-canary")) if a in arms and b in arms]
    out = []
    for s in seeds:
        f = facts[s]
        for a, b in pairs:
            if a in f and b in f and f[a] and f[b]:
                other = f[b][0] if b == SEED_ARM else _final(f[b])
                out.append({"seed": s, "arm": a, "against": b, **paired(_final(f[a])["greedy"], other["greedy"])})
    return out


SUMMARY_COLUMNS = [("arm", "arm", "{}"), ("iteration", "iter", "{}"), ("seeds", "seeds", "{}"),
                   ("pass_at_1", "pass@1", "{}"), ("hard_pass_at_1", "pass@1 hard levels", "{}"),
                   ("maj_at_n", "maj@N", "{}"), ("select_at_n", "select@N", "{}"), ("oracle_at_n", "oracle@N", "{}"),
                   ("lucky_share", "lucky share of positives", "{}")]
PAIRED_COLUMNS = [("seed", "seed", "{}"), ("arm", "arm", "{}"), ("against", "against", "{}"),
                  ("questions", "questions", "{}"), ("only_arm", "only arm right", "{}"),
                  ("only_other", "only other right", "{}"), ("delta", "Δ pass@1", "{:+.3f}"),
                  ("p_value", "McNemar p", "{:.4f}")]
KEYS = ("pass_at_1", "hard_pass_at_1", "maj_at_n", "select_at_n", "oracle_at_n", "lucky_share")


def summary_rows(facts: dict, seeds: list[int], arms: list[str]) -> list[dict]:
    """One row per arm and iteration: every KEY's values over seeds (lists), iteration 0 the seed model's."""
    rows = []
    for arm in arms:
        its = sorted({it for s in seeds for it in facts[s].get(arm, {})})
        for it in its:
            if it == 0 and arm != SEED_ARM:
                continue
            vals = [facts[s][arm][it] for s in seeds if it in facts[s].get(arm, {})]
            row = {"arm": arm, "iteration": it, "seeds": len(vals)}
            row.update({k: [v[k] for v in vals if v.get(k) is not None] for k in KEYS})
            levels = sorted({lv for v in vals for lv in v["by_level"]})
            row["by_level"] = {lv: [v["by_level"][lv] for v in vals if lv in v["by_level"]] for lv in levels}
            rows.append(row)
    return rows


def write_summary(exp_dir: str | Path, seeds: list[int], arms: list[str], cfg: Config) -> str:
    """summary.md, summary.parquet and the two plots in `exp_dir`; returns the Markdown."""
    exp_dir = Path(exp_dir)
    hard = hard_levels(cfg)
    got = collect(exp_dir, seeds, arms, hard)
    facts = got["facts"]
    rows = summary_rows(facts, seeds, arms)
    flat = [{"arm": r["arm"], "iteration": r["iteration"], "seed": s, "metric": k, "value": v}
            for r in rows for k in KEYS for s, v in zip(seeds, r[k])]
    flat += [{"arm": r["arm"], "iteration": r["iteration"], "seed": s, "metric": f"level_{lv}", "value": v}
             for r in rows for lv, vs in r["by_level"].items() for s, v in zip(seeds, vs)]
    pq.write_table(pa.Table.from_pylist(flat, schema=pa.schema([
        ("arm", pa.string()), ("iteration", pa.int64()), ("seed", pa.int64()), ("metric", pa.string()),
        ("value", pa.float64())])), exp_dir / "summary.parquet")
    shown = [{**r, **{k: fmt(r[k]) for k in KEYS}} for r in rows]
    levels = sorted({lv for r in rows for lv in r["by_level"]})
    finals = [max((r for r in rows if r["arm"] == a), key=lambda r: r["iteration"]) for a in arms
              if any(r["arm"] == a for r in rows)]
    level_cols = [("arm", "arm", "{}"), ("iteration", "iter", "{}")] + [
        (f"l{lv}", f"level {lv}" + (" (hard)" if lv in hard else ""), "{}") for lv in levels]
    level_rows = [{"arm": r["arm"], "iteration": r["iteration"],
                   **{f"l{lv}": fmt(r["by_level"].get(lv, [])) for lv in levels}} for r in finals]
    seed_row = next((r for r in rows if r["arm"] == SEED_ARM), None)
    lines = [f"# r3v experiment `{exp_dir.name}` over {len(seeds)} seed(s): {', '.join(map(str, seeds))}", "",
             f"Mean ± 95% t interval over seeds (a value alone: one seed). Hard levels: {hard} (test levels "
             "beyond the seed split's). Lucky share: positives of the iteration's pool with a right answer but "
             "a wrong reading or intermediate result. Each seed's own tables: `seed=<s>/results.md`.", "",
             markdown_table(shown, SUMMARY_COLUMNS), "", "![accuracy](summary_accuracy.png)", "",
             "Final model of each arm, greedy pass@1 per difficulty level (reasoning steps):", "",
             markdown_table(level_rows, level_cols), "", "![levels](summary_levels.png)", ""]
    if seed_row and seed_row["hard_pass_at_1"]:
        base = statistics.fmean(seed_row["hard_pass_at_1"])
        lines += ["Final hard-level pass@1 relative to the seed model's "
                  f"({fmt(seed_row['hard_pass_at_1'])}), per seed and pooled:", ""]
        for r in finals:
            if r["arm"] == SEED_ARM or not r["hard_pass_at_1"]:
                continue
            per = [a / b if b else float("nan") for a, b in zip(r["hard_pass_at_1"], seed_row["hard_pass_at_1"])]
            mean = statistics.fmean(r["hard_pass_at_1"])
            lines.append(f"- {r['arm']}: {mean / base:.2f}× (per seed: {', '.join(f'{x:.2f}' for x in per)})"
                         if base else f"- {r['arm']}: seed model at 0")
        lines.append("")
    scaling = _scaling_rows(got["scaling"], seeds, arms)
    if scaling:
        lines += ["Test-time compute scaling of each final model (mean over seeds):", "",
                  markdown_table(scaling, [("arm", "arm", "{}"), ("n", "N", "{}"), ("pass_at_1", "pass@1", "{}"),
                                           ("maj_at_n", "maj@N", "{}"), ("select_at_n", "select@N", "{}"),
                                           ("oracle_at_n", "oracle@N", "{}")]), ""]
    pairs = _paired_rows(facts, seeds, arms)
    if pairs:
        lines += ["Final models question by question, per seed (greedy; exact McNemar test on the questions "
                  "exactly one of the two gets right):", "", markdown_table(pairs, PAIRED_COLUMNS), ""]
    _plots(exp_dir, rows, finals, levels, hard)
    md = "\n".join(lines)
    (exp_dir / "summary.md").write_text(md)
    (exp_dir / "summary.json").write_text(json.dumps({"seeds": seeds, "arms": arms, "hard_levels": hard}))
    return md


def _scaling_rows(scaling: dict, seeds: list[int], arms: list[str]) -> list[dict]:
    out = []
    for arm in arms:
        per_seed = [scaling[s].get(arm, []) for s in seeds]
        ns = sorted({r["n"] for rows in per_seed for r in rows})
        for n in ns:
            vals = [r for rows in per_seed for r in rows if r["n"] == n]
            out.append({"arm": arm, "n": n, **{k: fmt([v[k] for v in vals if v[k] is not None])
                                               for k in ("pass_at_1", "maj_at_n", "select_at_n", "oracle_at_n")}})
    return out


def _plots(exp_dir: Path, rows: list[dict], finals: list[dict], levels: list[int], hard: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    seed0 = next((r for r in rows if r["arm"] == SEED_ARM and r["iteration"] == 0), None)
    for ax, key, title in ((axes[0], "pass_at_1", "pass@1, all levels"),
                           (axes[1], "hard_pass_at_1", f"pass@1, hard levels {hard}")):
        for arm in dict.fromkeys(r["arm"] for r in rows):
            pts = ([seed0] if seed0 and arm != SEED_ARM else []) + [r for r in rows if r["arm"] == arm]
            pts = [(r["iteration"], *interval(r[key])) for r in pts if r[key]]
            if not pts:
                continue
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] or 0 for p in pts],
                        marker="o", capsize=3, label=arm)
        ax.set_title(title)
        ax.set_xlabel("iteration (0 = seed model)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (mean ± 95% CI over seeds)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(exp_dir / "summary_accuracy.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(finals))
    for i, r in enumerate(finals):
        means = [interval(r["by_level"].get(lv, []))[0] or 0 for lv in levels]
        errs = [interval(r["by_level"].get(lv, []))[1] or 0 for lv in levels]
        ax.bar([lv + (i - len(finals) / 2 + 0.5) * width for lv in levels], means, width, yerr=errs,
               capsize=2, label=f"{r['arm']} (iter {r['iteration']})")
    ax.set_xticks(levels)
    ax.set_xlabel("difficulty level (reasoning steps)" + (f"; hard: {hard}" if hard else ""))
    ax.set_ylabel("greedy pass@1")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(exp_dir / "summary_levels.png", dpi=110)
    plt.close(fig)
