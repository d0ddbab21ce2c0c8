"""A complete comparison's design check (report/design_check.py): the base model's score and the baseline's
gain over it, the baseline's loss by quarter, the collapsed methods and the wall time, by hand."""
import pytest

from lorabench.report import design_check, leaderboard
from test_comparison import only, rec


def grid():
    recs = []
    for s in range(2):
        # lora learns (0.80 at its chosen rate); pissa is chosen at a rate where it learned nothing (0.52)
        recs.append(rec("lora", s, 1e-3, test=0.80, valid=0.9, losses=(1.0, 0.6, 0.3, 0.2, 0.15, 0.14, 0.13, 0.12),
                        created=f"2026-01-01T00:0{2 * s}:00"))
        recs.append(rec("pissa", s, 1e-3, test=0.52, valid=0.5, created=f"2026-01-01T00:0{2 * s + 1}:00"))
    for r in recs:
        r["costs"]["run_seconds"] = 90.0   # four runs ending 1 min apart, 90 s each: 60 + 60 + 60 + 90 s of wall
    return recs


def test_design_check_by_hand():
    recs = grid()
    k = design_check.check(only(recs))
    assert k.base is None and k.gain is None and k.collapsed == []
    recs[0]["metrics_base"] = {"primary": "accuracy", "values": {"accuracy": 0.50}, "n": 100}
    recs[0]["run_id"] = "abc-s0"
    k = design_check.check(only(recs))
    assert k.base == pytest.approx(50.0) and k.base_run == "abc-s0"
    assert k.gain == pytest.approx(30.0)
    assert k.quarters == pytest.approx([0.8, 0.25, 0.145, 0.125])
    assert k.flat   # last quarter falls 0.02 of a 0.675 whole fall
    assert k.collapsed == ["pissa"]   # 52 % < 50 + 5
    assert k.wall_s == pytest.approx(270.0) and k.n_records == 4
    text = design_check.text(only(recs))
    assert "+30.0 points" in text and "flat" in text and "Collapsed (" in text and "4 min" in text   # 4.5 min, rounded half to even
    assert ("Design targets: gain ≥ 10 points: met; at most 1 collapsed: met (1); loss flat: met; "
            "wall ≤ 150 min: met; original methods ≤ 90 min: met.") in text
    k.collapsed, k.gain, k.wall_s, k.wall_core_s = ["a", "b"], 9.9, 151 * 60, 91 * 60
    assert design_check.targets(k) == ("gain ≥ 10 points: **not met**; at most 1 collapsed: **not met** (2); "
                                       "loss flat: met; wall ≤ 150 min: **not met**; "
                                       "original methods ≤ 90 min: **not met**")


def test_the_newer_methods_runs_count_in_the_wall_time_but_not_in_the_original_methods():
    recs = grid()
    recs.append(rec("kasa", 0, 1e-3, test=0.7, valid=0.7, created="2026-01-01T00:10:00"))
    recs[-1]["costs"]["run_seconds"] = 60.0
    k = design_check.check(only(recs))
    assert k.wall_s == pytest.approx(330.0) and k.n_records == 5
    assert k.wall_core_s == pytest.approx(270.0) and k.n_core == 4


def test_still_falling_and_a_record_without_its_run_time():
    assert design_check.quarters([{"loss": x} for x in (1.0, 0.8, 0.6, 0.4)]) == [1.0, 0.8, 0.6, 0.4]
    recs = grid()
    del recs[1]["costs"]["run_seconds"]
    assert design_check.check(only(recs)).wall_s is None


def test_the_readme_line_of_a_complete_comparison_names_gain_and_wall_time():
    recs = grid()
    recs[0]["metrics_base"] = {"primary": "accuracy", "values": {"accuracy": 0.50}, "n": 100}
    recs[0]["run_id"] = "abc-s0"
    out = leaderboard.readme_tables([only(recs)], [], [])
    assert "lora +30.0 points over the base model; wall time 4 min for 4 runs (gain ≥ 10 points: met;" in out
