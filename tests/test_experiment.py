"""Integration: the experiment runner (seed, STaR, R3V, ablations) on the tiny model, in-process."""

import pytest
from test_flow import OVERRIDES

pytestmark = pytest.mark.slow

ARMS = ["seed", "star", "r3v", "r3v-no-refine", "r3v-no-select"]
BUDGET = 3  # optimizer steps per iteration, the same for every arm


@pytest.fixture(scope="module")
def exp_dir(tmp_path_factory, cache_dir, embedded_model):
    from prefect.testing.utilities import prefect_test_harness

    from flows.experiment import experiment_flow

    root = tmp_path_factory.mktemp("runs")
    overrides = OVERRIDES + [f"run.root={root}", f"model.cache_dir={cache_dir}", f"train.max_steps={BUDGET}"]
    with prefect_test_harness(server_startup_timeout=120):
        md = experiment_flow(overrides=overrides, name="exp", iterations=1, arms=ARMS[1:], ns=[1, 2])
        again = experiment_flow(overrides=overrides, name="exp", iterations=1, arms=ARMS[1:], ns=[1, 2])
    assert md == again  # a finished experiment reruns as a no-op
    return root / "exp"


def q(run_dir, sql):
    from r3v.store import Store

    return Store(run_dir).query(sql).to_pylist()


def test_arms_share_the_seed_model_and_first_rollouts(exp_dir):
    from r3v.run import Run

    arms = {a: exp_dir / "arms" / a for a in ARMS}
    assert all((d / "config.yaml").exists() for d in arms.values())
    assert [a for a, d in arms.items() if (d / "checkpoints" / "seed").exists()] == ["seed"]  # M_0 trained once
    base = Run.open(arms["seed"]).meta["base_model"]
    assert {Run.open(d).meta["base_model"] for d in arms.values()} == {base}
    first = q(arms["star"], "SELECT sample_id, rationale, correct FROM samples ORDER BY sample_id")
    assert len(first) == 72
    for arm in ("r3v", "r3v-no-refine", "r3v-no-select"):
        assert Run.open(arms[arm]).meta["adopted_rollouts_from"] == str(arms["star"].resolve())
        assert q(arms[arm], "SELECT sample_id, rationale, correct FROM samples ORDER BY sample_id") == first
    m0 = q(arms["seed"], "SELECT pass_at_1, select_at_n FROM metrics WHERE iteration = 0")
    for d in arms.values():
        assert q(d, "SELECT pass_at_1, select_at_n FROM metrics WHERE iteration = 0") == m0


def test_an_arm_with_another_judge_judges_the_adopted_rollouts(exp_dir, cache_dir):
    # r3v-checked (judge.check_reading) adopts the same rollouts and judges them itself: lucky
    # positives become wrong_reading negatives. (Its training is not run here: the tiny test model
    # has too few true positives to train on, which the train step refuses with a clear error.)
    from r3v import steps
    from r3v.config import load_config
    from r3v.experiment import adopt, arm_overrides
    from r3v.run import Run, init_run

    overrides = OVERRIDES + [f"run.root={exp_dir.parent}", f"model.cache_dir={cache_dir}"]
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
    from r3v.experiment import _paired_rows

    final = {r["arm"]: r["pass_at_1"] for r in results}
    pairs = {(r["arm"], r["against"]): r for r in _paired_rows(exp_dir, ARMS)}
    assert set(pairs) == {(a, "seed") for a in ARMS[1:]} | {("r3v", "star")}
    for (arm, other), r in pairs.items():
        assert r["questions"] == 12 and 0 <= r["p_value"] <= 1
        assert r["delta"] == pytest.approx(final[arm] - final[other])
    assert "McNemar" in md


def test_mcnemar_exact_and_paired_counts():
    from r3v.experiment import mcnemar, paired

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
