"""The end-of-run report: a per-iteration table (Markdown + Parquet), an accuracy plot and the
loss curves (PNG).

The table is the `metrics` view (r3v/sql/metrics.sql): accuracy by metric, pool facts, set
sizes and step wall times per iteration; iteration 0 is the seed model. With several task
families, pass@1 per family (the `family_accuracy` view) follows.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from r3v.objective import TERMS
from r3v.store import Store

COLUMNS = [  # (column, header, format)
    ("iteration", "iter", "{}"), ("pass_at_1", "pass@1", "{:.3f}"), ("maj_at_n", "maj@N", "{:.3f}"),
    ("oracle_at_n", "oracle@N", "{:.3f}"), ("select_at_n", "select@N", "{:.3f}"),
    ("samples", "samples", "{}"), ("positives", "pos", "{}"), ("negatives", "neg", "{}"),
    ("share_mixed", "mixed", "{:.2f}"), ("unparsed_rate", "unparsed", "{:.3f}"),
    ("rationale_free_rate", "no rationale", "{:.3f}"),
    ("sft_examples", "sft", "{}"), ("refine_pairs", "refine", "{}"), ("select_sets", "select", "{}"),
    ("seconds_total", "seconds", "{:.0f}"),
]


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]] = COLUMNS) -> str:
    """A Markdown table of `rows` with `columns` as (key, header, format); None shows as –."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join("–" if r.get(c) is None else f.format(r[c]) for c, _, f in columns) + " |"
            for r in rows]
    return "\n".join([head, sep, *body])


def step_times(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        steps = r.get("seconds_by_step") or []
        items = steps.items() if isinstance(steps, dict) else steps
        lines.append(f"- iteration {r['iteration']}: " + ", ".join(f"{k} {v:.1f}s" for k, v in items))
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    its = [r["iteration"] for r in rows]
    for col, label in (("pass_at_1", "pass@1"), ("maj_at_n", "maj@N"), ("select_at_n", "select@N"),
                       ("oracle_at_n", "oracle@N")):
        ys = [r.get(col) for r in rows]
        pts = [(i, y) for i, y in zip(its, ys) if y is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xlabel("iteration (0 = seed model)")
    ax.set_ylabel("test accuracy")
    ax.set_xticks(its)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_losses(rows: list[dict], out: Path) -> None:
    """Each loss by optimizer step, one panel per training (iteration 0 = the seed warm-up)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = sorted({r["iteration"] for r in rows})
    fig, axes = plt.subplots(1, len(its), figsize=(3.2 * len(its), 3), squeeze=False, sharey=True)
    for ax, it in zip(axes[0], its):
        mine = [r for r in rows if r["iteration"] == it]
        for col, label in ((t.loss_column, t.symbol) for t in TERMS):
            pts = [(r["step"], r[col]) for r in mine if r.get(col) is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, lw=1)
        ax.set_title("warm-up" if it == 0 else f"iteration {it}", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss (token mean)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_report(run_dir: str | Path) -> str:
    """Write results.md, results.parquet, accuracy.png and losses.png into the run folder; return
    the Markdown."""
    run_dir = Path(run_dir)
    store = Store(run_dir)
    table = store.query("SELECT * FROM metrics")
    rows = table.to_pylist()
    pq.write_table(table, run_dir / "results.parquet")
    plot(rows, run_dir / "accuracy.png")
    md = (f"# r3v run `{run_dir.name}`\n\n{markdown_table(rows)}\n\n"
          f"Iteration 0 is the seed model. N = samples per question.\n\n"
          f"Step wall times:\n{step_times(rows)}\n\n![accuracy](accuracy.png)\n")
    by_family = store.query("SELECT iteration, family, accuracy FROM family_accuracy "
                            "WHERE strategy = 'greedy'").to_pylist()
    families = sorted({r["family"] for r in by_family})
    if len(families) > 1:
        pivot: dict[int, dict] = {}
        for r in by_family:
            pivot.setdefault(r["iteration"], {"iteration": r["iteration"]})[r["family"]] = r["accuracy"]
        md += "\npass@1 by task family:\n\n" + markdown_table(
            [pivot[k] for k in sorted(pivot)], [("iteration", "iter", "{}")] + [(f, f, "{:.3f}") for f in families]) + "\n"
    losses = store.query("SELECT * FROM loss_curves").to_pylist()
    if losses:
        plot_losses(losses, run_dir / "losses.png")
        md += "\n![losses](losses.png)\n"
    (run_dir / "results.md").write_text(md)
    return md


def iteration_summary(run_dir: str | Path, iteration: int) -> tuple[list[dict], str]:
    """What the Prefect UI shows after iteration k: the metrics rows of iterations 0..k (flat
    values, for a table artifact) and a Markdown page with the accuracy plot (an embedded PNG),
    the table and the set sizes."""
    import base64
    import tempfile

    store = Store(run_dir)
    rows = [r for r in store.query("SELECT * FROM metrics").to_pylist() if r["iteration"] <= iteration]
    table = [{h: (None if r.get(c) is None else round(r[c], 4) if isinstance(r[c], float) else r[c])
              for c, h, _ in COLUMNS} for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        plot(rows, Path(tmp) / "accuracy.png")
        png = base64.b64encode((Path(tmp) / "accuracy.png").read_bytes()).decode()
    sizes = store.query(f"SELECT kind, count(*) AS n FROM src_sets WHERE iteration = {int(iteration)} "
                        "GROUP BY kind ORDER BY kind").to_pylist()
    md = (f"# `{Path(run_dir).name}` after iteration {iteration}\n\n"
          f"![accuracy by iteration](data:image/png;base64,{png})\n\n{markdown_table(rows)}\n\n"
          + (f"Training sets of iteration {iteration}: " + ", ".join(f"{s['kind']} {s['n']}" for s in sizes)
             if sizes else "No training sets at this iteration (the seed model).")
          + f"\n\nRun folder: `{Path(run_dir).resolve()}` — query it with `r3v sql`.\n")
    return table, md
