"""Integration: the experiment runner (seed, STaR, R3V, ablations) on the tiny model, in-process."""

import pytest

pytestmark = pytest.mark.slow

ARMS = ["seed", "star", "r3v", "r3v-no-refine", "r3v-no-select", "r3v-canary"]
BUDGET = 3  # optimizer steps per iteration, the same for every arm (the --quick profile's)


@pytest.fixture(scope="module")
def quick_overrides(model_overrides, seed_model):
    """The --quick profile from the shared M_0, with a seed stage of its own of a few steps at a
    low rate: the seed arm still trains M_0 once (what the arms share), without another 100-step
    warm-up (53 s) whose quality the arms' refine and select sets need."""
    from r3v.analysis.experiment import QUICK_OVERRIDES

    return QUICK_OVERRIDES + model_overrides + [f"model.source={seed_model}", "warmup.steps=4", "warmup.lr=1e-5"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, quick_overrides, harness):
    """The --quick profile through the flow, with one seed: <root>/exp/seed=0/ and the summary."""
    from flows.experiment import experiment_flow
    from r3v.analysis.experiment import QUICK

    root = tmp_path_factory.mktemp("runs")
    overrides = quick_overrides + [f"run.root={root}"]
    kw = dict(overrides=overrides, name="exp", iterations=QUICK["iterations"], arms=ARMS[1:], ns=QUICK["ns"],
              seeds=QUICK["seeds"])
    md = experiment_flow(**kw)
    again = experiment_flow(**kw)
    assert md == again  # a finished experiment reruns as a no-op
    return root / "exp"


@pytest.fixture(scope="module")
def exp_dir(experiment):
    return experiment / "seed=0"


def q(run_dir, sql):
    from r3v.store import Store

    return Store(run_dir).query(sql).to_pylist()


def test_arms_share_the_seed_model_and_first_rollouts(exp_dir):
    from r3v.run import Run

    arms = {a: exp_dir / "arms" / a for a in ARMS}
    assert all((d / "config.yaml").exists() for d in arms.values())
    assert [a for a, d in arms.items() if (d / "checkpoints" / "warmup").exists()] == ["seed"]  # M_0 trained once
    base = Run.open(arms["seed"]).meta["base_model"]
    assert {Run.open(d).meta["base_model"] for d in arms.values()} == {base}
    first = q(arms["star"], "SELECT sample_id, rationale, correct FROM samples ORDER BY sample_id")
    assert len(first) == 72
    for arm in ("r3v", "r3v-no-refine", "r3v-no-select"):
        assert Run.open(arms[arm]).meta["adopted_rollouts_from"] == str(arms["star"].resolve())
        assert q(arms[arm], "SELECT sample_id, rationale, correct FROM samples ORDER BY sample_id") == first
    # the canary adopts the same rollouts and shuffles their verdicts: as many positives, elsewhere
    canary = q(arms["r3v-canary"], "SELECT sample_id, rationale, correct FROM samples ORDER BY sample_id")
    assert [(r["sample_id"], r["rationale"]) for r in canary] == [(r["sample_id"], r["rationale"]) for r in first]
    assert sum(r["correct"] for r in canary) == sum(r["correct"] for r in first)
    assert sum(r["correct"] for r in first) in (0, len(first)) or \
        [r["correct"] for r in canary] != [r["correct"] for r in first]
    m0 = q(arms["seed"], "SELECT pass_at_1, select_at_n FROM metrics WHERE iteration = 0")
    for d in arms.values():
        assert q(d, "SELECT pass_at_1, select_at_n FROM metrics WHERE iteration = 0") == m0


def test_an_arm_with_another_judge_judges_the_adopted_rollouts(exp_dir, quick_overrides):
    # r3v-checked (judge.check_reading) adopts the same rollouts and judges them itself: lucky
    # positives become wrong_reading negatives. (Its training is not run here: the tiny test model
    # has too few true positives to train on, which the train step refuses with a clear error.)
    from r3v import steps
    from r3v.analysis.experiment import adopt, arm_overrides
    from r3v.analysis.replicates import seed_overrides
    from r3v.config import load_config
    from r3v.run import Run, init_run

    overrides = quick_overrides + [f"run.root={exp_dir.parent}"]
    overrides += seed_overrides(load_config(None, overrides), 0)  # as the experiment ran seed 0
    arm = init_run(load_config(None, overrides + arm_overrides(exp_dir, "r3v-checked", 1)))
    adopt(arm, exp_dir / "arms" / "seed", exp_dir / "arms" / "star")
    assert Run.open(arm).meta["adopted_rollouts_from"] == str((exp_dir / "arms" / "star").resolve())
    assert not (arm / "samples").exists() or not q(arm, "SELECT * FROM samples")  # the judged pool is not adopted
    steps.judge(str(arm), 1)
    first = q(exp_dir / "arms" / "star", "SELECT sample_id, rationale, correct FROM samples ORDER BY sample_id")
    checked = q(arm, "SELECT sample_id, rationale, correct, judge_reason FROM samples ORDER BY sample_id")
    assert [(r["sample_id"], r["rationale"]) for r in checked] == [(r["sample_id"], r["rationale"]) for r in first]
    for r, c in zip(first, checked):
        assert c["correct"] == (r["correct"] and c["judge_reason"] != "wrong_reading")


def test_arms_train_on_the_kinds_they_weight(exp_dir):
    import json

    def trained(arm):
        info = q(exp_dir / "arms" / arm, "SELECT info FROM src_steps WHERE step = 'train'")[0]["info"]
        return json.loads(info)["examples"]

    sizes = {r["kind"]: r["n"] for r in q(exp_dir / "arms" / "r3v", "SELECT kind, count(*) AS n FROM sets GROUP BY 1")}
    assert trained("star") == sizes["sft"]
    assert trained("r3v") == sizes["sft"] + sizes["refine"] + sizes["select"]
    assert trained("r3v-no-refine") == sizes["sft"] + sizes["select"]
    assert trained("r3v-no-select") == sizes["sft"] + sizes["refine"]
    steps = {arm: q(exp_dir / "arms" / arm, "SELECT count(*) AS n FROM src_train_log WHERE iteration = 1")[0]["n"]
             for arm in ARMS[1:]}
    assert trained("r3v-canary") > 0
    assert steps == dict.fromkeys(ARMS[1:], BUDGET)  # equal compute, whatever the arm trains on
    star_losses = q(exp_dir / "arms" / "star", "SELECT sum(tokens_refine) AS r, sum(tokens_select) AS s FROM src_train_log "
                    "WHERE iteration = 1")[0]
    assert star_losses == {"r": 0, "s": 0}


def test_scaling_and_comparison_report(exp_dir):
    import pyarrow.parquet as pq

    for arm in ARMS:
        rows = q(exp_dir / "arms" / arm, "SELECT * FROM scaling")
        assert [r["n"] for r in rows] == [1, 2]
        assert rows[0]["iteration"] == (0 if arm == "seed" else 1)
        assert rows[0]["pass_at_1"] == rows[1]["pass_at_1"]
        assert rows[0]["maj_at_n"] == rows[0]["oracle_at_n"]  # one sample: its vote is the oracle
        assert rows[1]["oracle_at_n"] >= rows[0]["oracle_at_n"]
        strategies = q(exp_dir / "arms" / arm, "SELECT DISTINCT strategy FROM src_scaling_eval ORDER BY 1")
        assert [r["strategy"] for r in strategies] == ["greedy", "sample", "select@1", "select@2"]
    results = pq.read_table(exp_dir / "results.parquet").to_pylist()
    assert sorted({r["arm"] for r in results}) == sorted(ARMS)
    assert sorted((r["arm"], r["iteration"]) for r in results) == sorted([("seed", 0)] + [(a, 1) for a in ARMS[1:]])
    assert len(pq.read_table(exp_dir / "scaling.parquet")) == 2 * len(ARMS)
    md = (exp_dir / "results.md").read_text()
    assert all(f"| {a} |" in md for a in ARMS) and "× the seed model" in md
    assert "by task family" in md and all(f"| {f} |" in md for f in ("clevr_math", "chart", "table"))
    assert (exp_dir / "accuracy.png").stat().st_size > 1000 and (exp_dir / "scaling.png").stat().st_size > 1000
    # the paired comparison agrees with the accuracies it compares
    from r3v.analysis.experiment import _paired_rows

    final = {r["arm"]: r["pass_at_1"] for r in results}
    pairs = {(r["arm"], r["against"]): r for r in _paired_rows(exp_dir, ARMS)}
    assert set(pairs) == {(a, "seed") for a in ARMS[1:]} | {("r3v", "star")}
    for (arm, other), r in pairs.items():
        assert r["questions"] == 15 and 0 <= r["p_value"] <= 1
        assert r["delta"] == pytest.approx(final[arm] - final[other])
    assert "McNemar" in md


def test_mcnemar_exact_and_paired_counts():
    from r3v.analysis.experiment import mcnemar, paired

    assert mcnemar(0, 0) == 1.0
    assert mcnemar(5, 5) == 1.0
    # 10 discordant, split 9:1 -> 2 * (1 + 10) / 1024
    assert abs(mcnemar(9, 1) - 22 / 1024) < 1e-12
    assert mcnemar(1, 9) == mcnemar(9, 1)
    a = {"q1": True, "q2": True, "q3": False, "q4": False, "q5": True}
    b = {"q1": True, "q2": False, "q3": True, "q4": False, "q6": True}
    r = paired(a, b)
    assert (r["questions"], r["only_arm"], r["only_other"]) == (4, 1, 1)
    assert r["delta"] == 0.0 and r["p_value"] == 1.0


def test_summary_over_seeds(experiment, exp_dir):
    import pyarrow.parquet as pq

    md = (experiment / "summary.md").read_text()
    assert "over 1 seed(s): 0" in md and "Hard levels: [3, 4, 5]" in md
    assert all(f"| {a} |" in md for a in ARMS) and "McNemar" in md and "(hard)" in md
    rows = pq.read_table(experiment / "summary.parquet").to_pylist()
    # the summary's numbers are the seed's own: pass@1 and per level from the same evaluation
    final = {r["arm"]: r["pass_at_1"] for r in pq.read_table(exp_dir / "results.parquet").to_pylist()}
    got = {r["arm"]: r["value"] for r in rows if r["metric"] == "pass_at_1" and r["iteration"] == (0 if r["arm"] == "seed" else 1)}
    assert got == pytest.approx(final)
    levels = q(exp_dir / "arms" / "r3v", "SELECT level, accuracy FROM level_accuracy WHERE iteration = 1 "
               "AND strategy = 'greedy' ORDER BY level")
    assert [r["level"] for r in levels] == [1, 2, 3, 4, 5]
    mine = {int(r["metric"][6:]): r["value"] for r in rows
            if r["arm"] == "r3v" and r["iteration"] == 1 and r["metric"].startswith("level_")}
    assert mine == pytest.approx({r["level"]: r["accuracy"] for r in levels})
    assert {r["metric"] for r in rows if r["arm"] == "r3v"} >= {"lucky_share", "hard_pass_at_1", "select_at_n"}
    assert (experiment / "summary_accuracy.png").stat().st_size > 1000
    assert (experiment / "summary_levels.png").stat().st_size > 1000


def test_interval_and_seed_overrides():
    from r3v.analysis.replicates import fmt, interval, seed_overrides
    from r3v.config import load_config

    assert interval([]) == (None, None) and interval([0.5]) == (0.5, None)
    mean, half = interval([0.4, 0.5, 0.6])  # s = 0.1, t(0.975, 2) = 4.303
    assert mean == pytest.approx(0.5) and half == pytest.approx(4.303 * 0.1 / 3 ** 0.5)
    assert fmt([0.4, 0.5, 0.6]) == "0.500 ± 0.248" and fmt([0.25]) == "0.250" and fmt([]) == "–"
    cfg = load_config(overrides=["run.seed=5"])
    assert seed_overrides(cfg, 0) == ["run.seed=5", f"data.embedded.seed={cfg.data.embedded.seed}"]
    assert seed_overrides(cfg, 2) == ["run.seed=7", f"data.embedded.seed={cfg.data.embedded.seed + 2}"]
