"""Side-by-side experiments: the seed model, STaR, R3V and its ablations on one seed model.

An experiment folder holds one ordinary run folder per arm (`arms/<arm>/`, each queryable with
`r3v sql`), plus the comparison tables and plots:

    <run.root>/<experiment>/
      experiment.json                     arms, iterations, N values, base config
      arms/<arm>/                         a run folder
      results.md  results.parquet  accuracy.png      accuracy by iteration per arm
      scaling.parquet  scaling.png                   final model of each arm, N in ns

Every arm uses the same seed model M_0, questions, sampling settings and training settings; the
arms differ only in the loss weights (and `r3v-checked` and the canary `r3v-canary` in their judge). The seed arm trains M_0 once; the others adopt its
questions, its M_0 (by path) and its iteration-0 evaluation, and the first trained arm's
iteration-1 rollouts (sampled by the same M_0 with the same seeds, so identical for every arm),
instead of recomputing them (an arm with another judge, `r3v-checked` or `r3v-canary`, adopts the rollouts and
judges them itself). Repeated over seeds with a summary: r3v/analysis/replicates.py. A kind of set weighted 0 is left out of training, so STaR trains on the SFT
set alone.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from r3v.analysis.error_kinds import ERROR_KINDS, breakdown
from r3v.analysis.report import markdown_table
from r3v.config import Config
from r3v.ledger import done
from r3v.objective import TERMS
from r3v.run import Run
from r3v.step_table import SCALING_NS, STEPS
from r3v.store import Store, atomic_dir

log = logging.getLogger(__name__)

SEED_ARM = "seed"
ARMS: dict[str, list[str]] = {  # arm -> config overrides on top of the experiment's config
    SEED_ARM: [],
    "star": ["train.lambda_ref=0", "train.lambda_sel=0"],
    "r3v": [],
    "r3v-no-refine": ["train.lambda_ref=0"],
    "r3v-no-select": ["train.lambda_sel=0"],
    # The authors' anchor data (the seed split's gold rationales and the train questions' direct
    # answers in every iteration's mix: TrainConfig.anchor), switched on or off against the config.
    "star-anchor": ["train.lambda_ref=0", "train.lambda_sel=0", "train.anchor=true"],
    "r3v-anchor": ["train.anchor=true"],
    "star-no-anchor": ["train.lambda_ref=0", "train.lambda_sel=0", "train.anchor=false"],
    "r3v-no-anchor": ["train.anchor=false"],
    # Not in the default set: R3V with positives that must also read the scene right (a diagnostic
    # of false positives on the embedded benchmark; see JudgeConfig.check_reading).
    "r3v-checked": ["judge.check_reading=true"],
    # The canary: R3V with each iteration's verdicts shuffled among its samples (same counts). It
    # must not beat the seed model; if it does, the loop learns from something besides the judge.
    "r3v-canary": ["judge.shuffle_labels=true"],
    # Self-questioning (issue 6). They share the seed arm's M_0, so L_SQ is trained in the iterations
    # only (sq.warmup has no effect on an adopted M_0), and the prototype extractor starts at
    # gate 0 on M_0 in each iteration's adapter. They need several questions per image
    # (data.embedded.questions_per_image > 1) in the experiment's config, for every arm.
    "r3v-sq": ["sq.enabled=true"],
    "r3v-sq-proto": ["sq.enabled=true", "model.prototype.enabled=true", "model.prototype.cluster_fraction=0.5",
                     "model.prototype.lr=5e-3"],
    "r3v-qar": ["qar.rollout_n=3", "eval.strategy=both"],
}
DEFAULT_ARMS = (SEED_ARM, "star", "r3v", "r3v-no-refine", "r3v-no-select", "r3v-canary")
DEFAULT_NS = SCALING_NS

QUICK_OVERRIDES = [  # `r3v experiment --quick`: every arm and report on tiny sizes, to prove the machinery
    "data.embedded.n_seed=200", "data.embedded.n_train=24", "data.embedded.n_test=15", "warmup.steps=100",
    "warmup.batch_size=16", "train.max_steps=3", "train.batch_size=8", "train.grad_accum=1",
    "rollout.max_new_tokens=64", "eval.n=2",
]
QUICK = {"iterations": 1, "seeds": [0], "ns": [1, 2]}
"""`--quick`: QUICK_OVERRIDES first (the command line's own overrides win), and these defaults.
It measures nothing: 100 seed steps and 3 training steps teach the tiny model little."""

# What an arm adopts: (table, partition keys); seed-arm parts first, then iteration-1 rollouts.
SEED_PARTS = [("questions", {}), ("train_log", {"iteration": 0}), ("eval", {"iteration": 0}),
              ("eval_metrics", {"iteration": 0})] + [
    ("steps", {"iteration": 0, "step": s}) for s in ("prepare", "warmup", "evaluate")]
ROLLOUT_PARTS = [("rollouts", {"iteration": 1}), ("steps", {"iteration": 1, "step": "rollout"})]
JUDGED_PARTS = [("samples", {"iteration": 1}), ("steps", {"iteration": 1, "step": "judge"})]


def experiment_dir(cfg: Config, name: str) -> Path:
    """`<run.root>/<name>`: the experiment folder beside the config's runs."""
    return cfg.run_dir.parent / name


def arm_overrides(exp_dir: Path, arm: str, iterations: int) -> list[str]:
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r} (known: {', '.join(ARMS)})")
    return [*ARMS[arm], f"run.root={exp_dir / 'arms'}", f"run.name={arm}",
            f"run.iterations={0 if arm == SEED_ARM else iterations}"]


def _copy_partition(src: Store, dst: Store, table: str, keys: dict) -> None:
    source = src.partition(table, **keys)
    if table == "steps" and not source.is_dir() and STEPS[keys["step"]].formerly:  # a donor of an older version
        keys = {**keys, "step": STEPS[keys["step"]].formerly}
        source = src.partition(table, **keys)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: nothing to adopt (has the donor run finished that step?)")
    with atomic_dir(dst.partition(table, **keys)) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)


def adopt(arm_dir: str | Path, seed_dir: str | Path, donor_dir: str | Path | None = None) -> dict:
    """Give the arm at `arm_dir` the seed arm's M_0 and iteration 0, and (when `donor_dir` has
    them) the donor's iteration-1 rollouts. Parts the arm already has are left alone."""
    arm, seed = Run.open(arm_dir), Run.open(seed_dir)
    if done(arm, 0, "warmup") is None:  # the meta first, the step records last: a crash in between re-adopts
        arm.update_meta(source_model=seed.meta["source_model"], base_model=seed.meta["base_model"],
                        adopted_seed_from=str(Path(seed_dir).resolve()))
        for table, keys in SEED_PARTS:
            _copy_partition(seed.store, arm.store, table, keys)
    adopted_rollouts = False
    if donor_dir is not None and done(arm, 1, "rollout") is None:
        donor = Run.open(donor_dir)
        same = (donor.meta.get("base_model") == arm.meta["base_model"] and donor.cfg.rollout == arm.cfg.rollout
                and donor.cfg.run.seed == arm.cfg.run.seed and donor.cfg.data == arm.cfg.data
                and donor.cfg.model == arm.cfg.model and donor.cfg.qar == arm.cfg.qar)
        if same and done(donor, 1, "judge") is not None:
            arm.update_meta(adopted_rollouts_from=str(Path(donor_dir).resolve()))
            # the judged pool too when the judge is the same; else the arm judges the rollouts itself
            parts = ROLLOUT_PARTS + (JUDGED_PARTS if donor.cfg.judge == arm.cfg.judge else [])
            for table, keys in parts:
                _copy_partition(donor.store, arm.store, table, keys)
            adopted_rollouts = True
    return {"arm": arm.cfg.run.name, "adopted_rollouts": adopted_rollouts}


# -- the comparison ---------------------------------------------------------------------

COLUMNS = [  # (column, header, format)
    ("arm", "arm", "{}"), ("iteration", "iter", "{}"), ("pass_at_1", "pass@1", "{:.3f}"),
    ("maj_at_n", "maj@N", "{:.3f}"), ("oracle_at_n", "oracle@N", "{:.3f}"), ("select_at_n", "select@N", "{:.3f}"),
    ("share_with_positive", "≥1 pos", "{:.2f}"), ("share_mixed", "mixed", "{:.2f}"),
    ("unparsed_rate", "unparsed", "{:.3f}"), ("rationale_free_rate", "no rationale", "{:.3f}"),
    ("mean_rationale_tokens", "tokens", "{:.1f}"),
    ("sft_examples", "sft", "{}"), ("refine_pairs", "refine", "{}"), ("select_sets", "select", "{}"),
    *[(f"{t.loss_column}_end", t.symbol, "{:.3f}") for t in TERMS],  # metrics.sql: loss_<term>_end
    ("sq_samples", "sq", "{}"), ("qar_chains", "qar", "{}"),
    ("qar_pass_at_1", "qar pass@1", "{:.3f}"),
    ("train_steps", "steps", "{}"), ("seconds_total", "seconds", "{:.0f}"),
]
SCALING_COLUMNS = [("arm", "arm", "{}"), ("iteration", "iter", "{}"), ("n", "N", "{}"),
                   ("pass_at_1", "pass@1", "{:.3f}"), ("maj_at_n", "maj@N", "{:.3f}"),
                   ("oracle_at_n", "oracle@N", "{:.3f}"), ("select_at_n", "select@N", "{:.3f}")]


FAMILY_SQL = """
    SELECT family, iteration, any_value(questions) AS questions,
           max(accuracy) FILTER (WHERE strategy = 'greedy')      AS pass_at_1,
           max(accuracy) FILTER (WHERE strategy = 'sample')      AS sample_accuracy,
           max(accuracy) FILTER (WHERE strategy LIKE 'select@%') AS select_at_n
    FROM family_accuracy WHERE iteration = (SELECT max(iteration) FROM family_accuracy)
    GROUP BY ALL ORDER BY family"""
FAMILY_COLUMNS = [("arm", "arm", "{}"), ("iteration", "iter", "{}"), ("family", "family", "{}"),
                  ("questions", "questions", "{}"), ("pass_at_1", "pass@1", "{:.3f}"),
                  ("sample_accuracy", "sample acc", "{:.3f}"), ("select_at_n", "select@N", "{:.3f}")]


def _arm_tables(arm_dir: Path, arm: str) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(metrics view + train steps, scaling view, final per-family accuracy) of one arm, each
    with an `arm` column first."""
    store = Store(arm_dir)
    metrics = store.query("SELECT m.*, (SELECT count(*) FROM src_train_log l WHERE l.iteration = m.iteration "
                          "AND m.iteration > 0) AS train_steps FROM metrics m")
    scaling = store.query("SELECT * FROM scaling")
    families = store.query(FAMILY_SQL)
    return tuple(t.add_column(0, "arm", pa.array([arm] * t.num_rows, pa.string()))
                 for t in (metrics, scaling, families))


ERROR_COLUMNS = [("arm", "arm", "{}"), ("iteration", "iter", "{}"), ("n", "rationales", "{}")] + [
    (k, k, "{:.3f}") for k in ERROR_KINDS]


def _error_kinds(exp_dir: Path, arms: list[str]) -> list[dict]:
    """The kinds of the sampled test rationales of each arm's final model, all families together."""
    out = []
    for arm in arms:
        store = Store(exp_dir / "arms" / arm)
        it = store.query("SELECT max(iteration) AS it FROM src_eval").to_pylist()[0]["it"]
        if it is not None:
            out += [{"arm": arm, "iteration": it, **r} for r in breakdown(store, it, "eval") if r["family"] == "all"]
    return out


PAIRED_COLUMNS = [("arm", "arm", "{}"), ("against", "against", "{}"), ("questions", "questions", "{}"),
                  ("only_arm", "only arm right", "{}"), ("only_other", "only other right", "{}"),
                  ("delta", "Δ pass@1", "{:+.3f}"), ("p_value", "McNemar p", "{:.3f}")]


def _greedy(store: Store, iteration: int | None = None) -> dict[str, bool]:
    """question id -> greedy test answer right, at `iteration` (default: the last evaluated)."""
    it = "(SELECT max(iteration) FROM src_eval)" if iteration is None else str(int(iteration))
    rows = store.query(f"SELECT question_id, correct FROM src_eval WHERE strategy = 'greedy' "
                       f"AND iteration = {it}").to_pylist()
    return {r["question_id"]: bool(r["correct"]) for r in rows}


def mcnemar(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: how often a fair coin over the discordant questions splits
    at least as unevenly as `only_a` : `only_b`."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def paired(a: dict[str, bool], b: dict[str, bool]) -> dict:
    """The paired comparison of two models' greedy answers on the same test questions."""
    common = sorted(set(a) & set(b))
    only_a = sum(a[q] and not b[q] for q in common)
    only_b = sum(b[q] and not a[q] for q in common)
    return {"questions": len(common), "only_arm": only_a, "only_other": only_b,
            "delta": (only_a - only_b) / len(common) if common else 0.0, "p_value": mcnemar(only_a, only_b)}


def _paired_rows(exp_dir: Path, arms: list[str]) -> list[dict]:
    """Each trained arm's final model against the seed model, and R3V's against STaR's, question by
    question: a gain of a few points on 200 questions may be noise, and this says how likely."""
    final = {arm: _greedy(Store(exp_dir / "arms" / arm)) for arm in arms}
    seed = _greedy(Store(exp_dir / "arms" / SEED_ARM), 0) if SEED_ARM in arms else {}
    pairs = [(arm, SEED_ARM, seed) for arm in arms if arm != SEED_ARM]
    if "r3v" in final and "star" in final:
        pairs.append(("r3v", "star", final["star"]))
    return [{"arm": arm, "against": other, **paired(final[arm], ref)}
            for arm, other, ref in pairs if final[arm] and ref]


def _plot(series: dict[str, list[tuple[float, float]]], xlabel: str, title: str, out: Path,
          xticks: list[int] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, pts in series.items():
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    if xticks:
        ax.set_xticks(xticks)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def write_report(exp_dir: str | Path, arms: list[str]) -> str:
    """results.md/.parquet, accuracy.png, scaling.parquet and scaling.png in the experiment folder."""
    exp_dir = Path(exp_dir)
    metrics, scales, fams = zip(*(_arm_tables(exp_dir / "arms" / arm, arm) for arm in arms))
    results, scaling_table = pa.concat_tables(metrics), pa.concat_tables(scales)
    families = pa.concat_tables(fams).to_pylist()
    # Iteration 0 is the shared seed model: one row, the seed arm's.
    results = results.filter(pc.or_(pc.equal(results["arm"], SEED_ARM), pc.not_equal(results["iteration"], 0)))
    pq.write_table(results, exp_dir / "results.parquet")
    pq.write_table(scaling_table, exp_dir / "scaling.parquet")
    rows, scaling = results.to_pylist(), scaling_table.to_pylist()
    its = sorted({r["iteration"] for r in rows})
    seed_p1 = next((r["pass_at_1"] for r in rows if r["iteration"] == 0 and r["pass_at_1"] is not None), None)
    start = [(0, seed_p1)] if seed_p1 is not None else []  # every arm starts from the seed model
    by_arm = {arm: start + [(r["iteration"], r["pass_at_1"]) for r in rows
                            if r["arm"] == arm and r["iteration"] > 0 and r["pass_at_1"] is not None]
              for arm in arms}
    by_arm[SEED_ARM] = [(i, seed_p1) for i in its] if seed_p1 is not None else []  # a flat reference line
    _plot(by_arm, "iteration (0 = seed model)", "pass@1 by iteration", exp_dir / "accuracy.png", its)
    lines = [f"# r3v experiment `{exp_dir.name}`", "",
             "Accuracy by iteration per arm (N = samples per question; iteration 0 is the shared seed model):", "",
             markdown_table(rows, COLUMNS), "", "![accuracy](accuracy.png)", ""]
    if scaling:
        _plot({f"{r_arm} {m}": [(s["n"], s[col]) for s in scaling if s["arm"] == r_arm]
               for r_arm in arms for m, col in (("select", "select_at_n"), ("maj", "maj_at_n"))},
              "N (samples per question)", "test-time compute scaling (final model of each arm)",
              exp_dir / "scaling.png", sorted({s["n"] for s in scaling}))
        lines += ["Test-time compute scaling, final model of each arm:", "", markdown_table(scaling, SCALING_COLUMNS), "",
                  "![scaling](scaling.png)", ""]
    if families:
        lines += ["Final model of each arm by task family (evaluation at the run's eval.n):", "",
                  markdown_table(families, FAMILY_COLUMNS), ""]
    errors = _error_kinds(exp_dir, arms)
    if errors:
        lines += ["What the final model's sampled test rationales are (`r3v errors`; lucky: right answer, wrong "
                  "reading of the scene):", "", markdown_table(errors, ERROR_COLUMNS), ""]
    pairs = _paired_rows(exp_dir, arms)
    if pairs:
        lines += ["Final models compared question by question (greedy pass@1; exact McNemar test on the "
                  "questions exactly one of the two gets right):", "", markdown_table(pairs, PAIRED_COLUMNS), ""]
    final = {arm: max((r for r in rows if r["arm"] == arm and r["pass_at_1"] is not None),
                      key=lambda r: r["iteration"], default=None) for arm in arms}
    if seed_p1:
        lines += ["Final pass@1 relative to the seed model:", ""]
        lines += [f"- {arm}: {f['pass_at_1']:.3f} ({f['pass_at_1'] / seed_p1:.2f}× the seed model's {seed_p1:.3f})"
                  for arm, f in final.items() if f is not None]
        lines.append("")
    md = "\n".join(lines)
    (exp_dir / "results.md").write_text(md)
    return md
