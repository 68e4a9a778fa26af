"""The `r3v` command.

    r3v run [CONFIG] [key=value ...]     run (or resume) the loop as the Prefect flow, in-process
    r3v sql RUN "SELECT …"               query a run's views read-only (RUN: folder or name under runs/)
    r3v report RUN                       rewrite and print a run's results table
    r3v build-model [CONFIG] [k=v ...]   build (or find) the cached embedded model; print its path
    r3v build-model --architecture A --out D  a tiny random LLaVA / Qwen2-VL / Qwen2.5-VL / Idefics3 model
    r3v experiment [CONFIG] [k=v ...]    seed model vs STaR vs R3V and its ablations, side by side
    r3v scale RUN [--ns 1 3 5 8]         test-time compute scaling of a run's final model
    r3v image-reliance RUN [--iteration K]  does the model use the image? (loss gap, wrong images)
    r3v errors RUN [--iteration K]       why rationales are wrong: format, perception, arithmetic, reasoning
    r3v data inspect SOURCE [--format F] what a dataset file holds: counts, rows, bad records
    r3v submit [CONFIG] [k=v ...]        start a run of the served deployment r3v/iterate (named r3v-<run name>)
    r3v config explain [KEY]             what each config key does: type, default, unit, paper value
    r3v serve                            serve deployments r3v/iterate and r3v-experiment/experiment
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from r3v import steps, watchdog
from r3v.analysis import judge_check
from r3v.analysis.error_kinds import ERROR_KINDS, breakdown
from r3v.analysis.experiment import ARMS, QUICK, QUICK_OVERRIDES, experiment_dir
from r3v.analysis.report import markdown_table, write_report
from r3v.config import ConfigError, explain, load_config
from r3v.datasets import inspect_source
from r3v.embedded.model.architectures import ARCHITECTURES, build_tiny
from r3v.embedded.model.build import ensure_built
from r3v.progress import quiet_libraries
from r3v.run import Run, RunLocked
from r3v.step_table import SCALING_NS
from r3v.store import ReadOnlyError, Store


def _split(args: list[str]) -> tuple[str | None, list[str]]:
    config = None
    if args and "=" not in args[0]:
        config, args = args[0], args[1:]
    return config, args


def _run_dir(name: str) -> Path:
    p = Path(name)
    if (p / "config.yaml").exists():
        return p
    q = Path("runs") / name
    if (q / "config.yaml").exists():
        return q
    raise SystemExit(f"r3v: no run folder at {p} or {q}")


def cmd_run(ns: argparse.Namespace) -> int:
    config, overrides = _split(ns.args)

    cfg = load_config(config, overrides)  # fail fast on a bad config, before Prefect starts
    _prefect_env()
    _watchdog()
    from flows.iterate import r3v_flow

    print(f"r3v: run {cfg.run_dir} (config hash {cfg.hash()})", flush=True)
    md = r3v_flow(config=config, overrides=overrides)  # a locked or mismatched run: main() says it in one line
    print(md)
    print(f"r3v: results in {cfg.run_dir}/results.md, plot {cfg.run_dir}/accuracy.png")
    print(f"r3v: inspect with: r3v sql {cfg.run_dir} \"SELECT * FROM metrics\"")
    return 0


def _flat_for_csv(table):
    """Nested columns (lists, structs, maps) as JSON text: CSV has no nested types."""
    import json

    import pyarrow as pa
    import pyarrow.types as pat

    for i, f in enumerate(table.schema):
        if pat.is_nested(f.type):
            text = [None if v is None else json.dumps(dict(v) if pat.is_map(f.type) else v, default=str)
                    for v in table.column(i).to_pylist()]
            table = table.set_column(i, f.name, pa.array(text, pa.string()))
    return table


def cmd_sql(ns: argparse.Namespace) -> int:
    import duckdb

    try:
        table = Store(_run_dir(ns.run)).query(ns.query)
    except (ReadOnlyError, duckdb.Error) as e:
        print(f"r3v sql: {e}", file=sys.stderr)
        return 2
    if ns.format == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(_flat_for_csv(table), sys.stdout.buffer)
    else:
        rel = duckdb.from_arrow(table)
        rel.show(max_rows=ns.max_rows, max_width=ns.max_width)
    return 0


def _prefect_env() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "r3v")


def _watchdog() -> None:
    """A killed run leaves no orphan: Prefect's temporary server and training workers are stopped
    when this process ends, however it ends (r3v/watchdog.py)."""
    watchdog.start()


def cmd_experiment(ns: argparse.Namespace) -> int:
    config, overrides = _split(ns.args)

    if ns.quick:
        overrides = QUICK_OVERRIDES + overrides
        for key, value in QUICK.items():
            if getattr(ns, key) is None:
                setattr(ns, key, value)
    ns.iterations = 3 if ns.iterations is None else ns.iterations
    ns.ns = ns.ns or list(SCALING_NS)
    cfg = load_config(config, overrides)  # fail fast, before Prefect starts
    bad = [a for a in ns.arms or [] if a not in ARMS]
    if bad:
        raise SystemExit(f"r3v experiment: unknown arms {bad} (known: {', '.join(ARMS)})")
    _prefect_env()
    _watchdog()
    from flows.experiment import experiment_flow

    exp_dir = experiment_dir(cfg, ns.name)
    print(f"r3v: experiment {exp_dir}", flush=True)
    experiment_flow(config=config, overrides=overrides, name=ns.name, iterations=ns.iterations, arms=ns.arms,
                    ns=ns.ns, seeds=ns.seeds)
    if ns.seeds is None:
        print(f"r3v: results in {exp_dir}/results.md; each arm is a run: "
              f"r3v sql {exp_dir}/arms/r3v \"SELECT * FROM metrics\"")
    else:
        print(f"r3v: summary over seeds in {exp_dir}/summary.md; each seed's results in {exp_dir}/seed=<s>/results.md; "
              f"each arm is a run: r3v sql {exp_dir}/seed={ns.seeds[0]}/arms/r3v \"SELECT * FROM level_accuracy\"")
    return 0


def cmd_scale(ns: argparse.Namespace) -> int:
    run_dir = _run_dir(ns.run)
    run = Run.open(run_dir)
    iteration = run.cfg.run.iterations if ns.iteration is None else ns.iteration
    print(steps.scale(str(run_dir), iteration, tuple(ns.ns)))
    return 0


def cmd_ask(ns: argparse.Namespace) -> int:
    from r3v.models import set_threads

    run_dir = _run_dir(ns.run)
    run = Run.open(run_dir)
    set_threads(run.cfg.run.torch_threads)
    iteration = run.cfg.run.iterations if ns.iteration is None else ns.iteration
    facts = steps.ask(str(run_dir), iteration, ns.split, ns.n, ns.images)
    rows = [{**r, "asked": " ".join(r["asked"].split())}
            for r in Store(run_dir).read("asked", iteration=iteration, split=ns.split).to_pylist()[:ns.show]]
    print(markdown_table(rows, [("question_id", "after", "{}"), ("context_answer", "its answer", "{}"),
                                ("asked", "asked by [vusr]", "{}"), ("novel", "novel", "{}")]))
    print(f"\niteration {iteration}, {facts['images']} {ns.split} images x {ns.n}: {facts['questions']:.0%} end in '?', "
          f"{facts['novel']:.0%} are not the data's questions, {facts['distinct']} distinct; all in "
          f"r3v sql {run_dir} \"SELECT * FROM src_asked\"")
    return 0


def cmd_image_reliance(ns: argparse.Namespace) -> int:
    from r3v.analysis.diagnostics import image_reliance
    from r3v.models import load_model, load_processor, set_threads

    run = Run.open(_run_dir(ns.run))
    set_threads(run.cfg.run.torch_threads)
    questions = run.questions("seed")[:ns.n]
    if not questions:
        raise SystemExit("r3v image-reliance: the run has no seed split (gold rationales are needed)")
    base = run.meta["base_model"]
    model = load_model(base, run.cfg.model.dtype, run.adapter(ns.iteration), run.device)
    r = image_reliance(model, load_processor(base), questions)
    print(f"iteration {ns.iteration}: rationale loss {r['loss_true']:.4f} with its own image, "
          f"{r['loss_shuffled']:.4f} with another's: gap {r['gap']:.4f} over {r['examples']} seed questions")
    return 0


def cmd_errors(ns: argparse.Namespace) -> int:
    rows = breakdown(Store(_run_dir(ns.run)), ns.iteration, ns.source)
    if not rows:
        raise SystemExit(f"r3v errors: no {ns.source} rows at iteration {ns.iteration}")
    cols = [("family", "family", "{}"), ("n", "rationales", "{}")] + [(k, k, "{:.3f}") for k in ERROR_KINDS]
    print(f"iteration {ns.iteration}, {ns.source}: share of sampled rationales by kind\n")
    print(markdown_table(rows, cols))
    return 0


def cmd_report(ns: argparse.Namespace) -> int:
    print(write_report(_run_dir(ns.run)))
    return 0


def cmd_build_model(ns: argparse.Namespace) -> int:
    if ns.architecture:
        if not ns.out:
            raise SystemExit("r3v build-model --architecture: give --out FOLDER")
        print(build_tiny(ns.architecture, ns.out))
        return 0

    cfg = load_config(*_split(ns.args))
    print(ensure_built(cfg.model.embedded, cfg.model.cache_dir))
    return 0


def cmd_data_inspect(ns: argparse.Namespace) -> int:
    columns = dict(kv.split("=", 1) for kv in ns.column or [])
    try:
        text, report = inspect_source(ns.source, ns.format, ns.image_dir, columns, ns.rows, ns.against)
    except (OSError, ValueError) as e:
        raise SystemExit(f"r3v data inspect: {e}") from None
    print(text)
    return 0 if report.kept else 1


def cmd_judge_check(ns: argparse.Namespace) -> int:
    try:
        cases = judge_check.load_cases(ns.file)
    except (OSError, ValueError) as e:
        raise SystemExit(f"r3v judge-check: {e}") from None
    result = judge_check.agreement(cases, ns.tolerance)
    print(judge_check.report(result))
    return 0 if result and result["all"]["agreement"] >= ns.min_agreement else 1


def cmd_serve(ns: argparse.Namespace) -> int:
    _prefect_env()
    from flows.serve import serve

    serve()
    return 0


def cmd_submit(ns: argparse.Namespace) -> int:
    """Start a flow run of the served deployment r3v/iterate, named r3v-<run name> from the
    moment it is created (the config is checked here first, so a bad one never reaches the queue)."""
    _prefect_env()
    config, overrides = _split(ns.args)
    cfg = load_config(config, overrides)  # ConfigError -> one line, exit 2
    params = {"overrides": overrides}
    if config:
        params["config"] = str(Path(config).resolve())  # the serving process may run elsewhere
    from prefect.deployments import run_deployment

    fr = run_deployment(ns.deployment, parameters=params, flow_run_name=f"r3v-{cfg.run.name}", timeout=0)
    print(f"flow run {fr.name} ({fr.id}) of {ns.deployment} scheduled; run folder {cfg.run_dir}")
    return 0


def cmd_config_explain(ns: argparse.Namespace) -> int:
    print(explain(ns.key))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="r3v", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--debug", action="store_true", help="show the traceback of a config or input error")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("run", help="run or resume the loop")
    s.add_argument("args", nargs="*", help="[CONFIG.yaml] [key=value ...]")
    s.set_defaults(fn=cmd_run)
    s = sub.add_parser("sql", help="query a run read-only")
    s.add_argument("run")
    s.add_argument("query")
    s.add_argument("--format", choices=["table", "csv"], default="table")
    s.add_argument("--max-rows", type=int, default=40)
    s.add_argument("--max-width", type=int, default=200)
    s.set_defaults(fn=cmd_sql)
    s = sub.add_parser("report", help="write and print a run's results table")
    s.add_argument("run")
    s.set_defaults(fn=cmd_report)
    s = sub.add_parser("build-model", help="build the embedded model (cached), or a tiny random model of an architecture")
    s.add_argument("args", nargs="*")

    s.add_argument("--architecture", choices=ARCHITECTURES,
                   help="a tiny random model of this architecture, for checking a set-up (learns nothing)")
    s.add_argument("--out", help="with --architecture: the folder to write")
    s.set_defaults(fn=cmd_build_model)
    s = sub.add_parser("experiment", help="seed vs STaR vs R3V and ablations, side by side")
    s.add_argument("args", nargs="*", help="[CONFIG.yaml] [key=value ...]")
    s.add_argument("--name", default="experiment", help="folder under run.root (default: experiment)")
    s.add_argument("--iterations", type=int, help="default 3 (--quick: 1)")
    s.add_argument("--arms", nargs="+", help="default: seed, star, r3v, r3v-no-refine, r3v-no-select, r3v-canary; "
                   "also r3v-checked, r3v-sq, r3v-sq-proto, r3v-qar")
    s.add_argument("--ns", nargs="+", type=int, help="N values for test-time scaling (default 1 3 5 8; --quick: 1 2)")
    s.add_argument("--seeds", nargs="+", type=int,
                   help="repeat the comparison per seed (data, sampling, training) into <name>/seed=<s>/ and "
                        "summarise: mean ± 95%% interval, McNemar per seed (--quick: 0)")
    s.add_argument("--quick", action="store_true",
                   help="tiny sizes, 1 iteration, 1 seed: proves the machinery in minutes, measures nothing")
    s.set_defaults(fn=cmd_experiment)
    s = sub.add_parser("scale", help="test-time compute scaling of a run's model")
    s.add_argument("run")
    s.add_argument("--iteration", type=int, help="default: the run's last iteration")
    s.add_argument("--ns", nargs="+", type=int, default=list(SCALING_NS))
    s.set_defaults(fn=cmd_scale)
    s = sub.add_parser("ask", help="sample self-generated questions from the virtual user ([vusr], SQ-LLaVA)")
    s.add_argument("run")
    s.add_argument("--iteration", type=int, help="default: the run's last iteration (0: the seed model)")
    s.add_argument("--split", default="test")
    s.add_argument("--n", type=int, default=3, help="questions per image (sampled with sq.ask_temperature/top_p)")
    s.add_argument("--images", type=int, default=0, help="0: every image of the split")
    s.add_argument("--show", type=int, default=12, help="rows to print")
    s.set_defaults(fn=cmd_ask)
    s = sub.add_parser("image-reliance", help="does the model use the image? (rationale loss with wrong images)")
    s.add_argument("run")
    s.add_argument("--iteration", type=int, default=0, help="0: the seed model (default)")
    s.add_argument("--n", type=int, default=128, help="seed questions to use")
    s.set_defaults(fn=cmd_image_reliance)
    s = sub.add_parser("errors", help="why rationales are wrong: format, perception, arithmetic, reasoning")
    s.add_argument("run")
    s.add_argument("--iteration", type=int, default=0, help="0: the seed model (default)")
    s.add_argument("--source", choices=["eval", "samples"], default="eval",
                   help="eval: the test split's samples (default); samples: the iteration's rollouts")
    s.set_defaults(fn=cmd_errors)
    s = sub.add_parser("data", help="look at a dataset before running on it")
    data = s.add_subparsers(dest="data_cmd", required=True)
    s = data.add_parser("inspect", help="counts, a few rows and every bad record of a dataset file or folder")
    s.add_argument("source", help="a file or folder: a benchmark's own file, JSONL, Parquet or a HF datasets folder")
    s.add_argument("--format", help="default: from the name (problems_*.json: tabmwp, *_human.json: chartqa, "
                                    "clevr_*.json: clevr_math, *.pk: geoqa, *.jsonl, *.parquet, HF folder)")
    s.add_argument("--image-dir", help="base folder for relative image paths (default: the file's folder)")
    s.add_argument("--column", action="append", metavar="CANONICAL=SOURCE",
                   help="generic formats: map a column, e.g. --column question=query")
    s.add_argument("--rows", type=int, default=3, help="rows to show")
    s.add_argument("--against", help="another split's file: list the ids both hold (leakage)")
    s.set_defaults(fn=cmd_data_inspect)
    s = sub.add_parser("judge-check", help="agreement of the judge with labelled outputs (JSONL), per benchmark")
    s.add_argument("file", help="JSONL: benchmark, output, gold, choices, expected (true/false), reason (r3v/analysis/judge_check.py)")
    s.add_argument("--tolerance", type=float, default=0.05, help="relaxed scorers' tolerance (judge.relaxed_tolerance)")
    s.add_argument("--min-agreement", type=float, default=0.0, help="exit 1 below this overall agreement")
    s.set_defaults(fn=cmd_judge_check)
    s = sub.add_parser("submit", help="start a run of the served deployment r3v/iterate, named r3v-<run name>")
    s.add_argument("args", nargs="*", help="[CONFIG.yaml] [key=value ...]")
    s.add_argument("--deployment", default="r3v/iterate", help="default: r3v/iterate")
    s.set_defaults(fn=cmd_submit)
    s = sub.add_parser("config", help="what each config key does")
    conf = s.add_subparsers(dest="config_cmd", required=True)
    s = conf.add_parser("explain", help="every key (or KEY, or the keys of a section) with its type, default and doc")
    s.add_argument("key", nargs="?", help="a dotted key (train.lambda_ref) or a section (train, rollout.vllm)")
    s.set_defaults(fn=cmd_config_explain)
    s = sub.add_parser("serve", help="serve deployments r3v/iterate and r3v-experiment/experiment")
    s.set_defaults(fn=cmd_serve)
    ns = p.parse_args(argv)

    quiet_libraries()
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    try:
        return ns.fn(ns)
    except (ConfigError, RunLocked) as e:  # the user's to fix: one line, no traceback (--debug: the traceback)
        if ns.debug:
            raise
        print(f"r3v {ns.cmd}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
