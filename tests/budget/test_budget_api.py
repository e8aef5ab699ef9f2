"""The PrivacyBudget contract (DESIGN §5), run against every ledger backend."""

from __future__ import annotations

import math
import pickle

import pytest


from dpfusion_chains.budget import (
    AlphaMismatchError,
    BudgetExhaustedError,
    DPFusionError,
    Ledger,
    PrivacyBudget,
    Reservation,
    open_ledger,
)
from dpfusion_chains.core.accounting import conversion_offset, epsilon_to_rdp_cap, rdp_to_epsilon

ALPHA, DELTA = 8.0, 1e-5
OFFSET = conversion_offset(ALPHA, DELTA)


def make(url: str, epsilon: float = 10.0, **kw) -> PrivacyBudget:
    return PrivacyBudget(epsilon=epsilon, delta=DELTA, alpha=ALPHA, ledger=url, **kw)


# -- construction and validation (no ledger needed beyond memory://) -----------------------------


def test_infeasible_budget_is_refused_with_advice():
    with pytest.raises(ValueError) as err:
        PrivacyBudget(epsilon=10.0, delta=1e-5, alpha=2.0, ledger="memory://")
    msg = str(err.value)
    assert "10.13" in msg and "alpha=8" in msg and "epsilon" in msg and "delta" in msg


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"alpha": 1.0}, "alpha must be"),
        ({"alpha": 0.5}, "alpha must be"),
        ({"delta": 0.0}, "delta must lie in (0, 1)"),
        ({"delta": 1.0}, "delta must lie in (0, 1)"),
        ({"epsilon": -1.0}, "epsilon must be"),
        ({"epsilon": math.inf}, "epsilon must be"),
        ({"on_exhausted": "ignore"}, "on_exhausted must be one of"),
        ({"ledger": "mysql://x/y"}, "unknown ledger"),
        ({"ledger": "budget.db"}, "sqlite:///"),
        ({"ledger": "sqlite://host/x.db"}, "sqlite:///relative"),
        ({"ledger": "sqlite:///x.db?nonsense=1"}, "unknown ledger URL parameter"),
        ({"per_unit": {"u": -2.0}}, "per_unit['u']"),
        ({"per_unit": {"line one\nline two": 2.0}}, "per_unit key"),
    ],
)
def test_bad_arguments_say_what_to_change(kwargs, fragment):
    args = {"epsilon": 10.0, "delta": DELTA, "alpha": ALPHA, "ledger": "memory://", **kwargs}
    with pytest.raises(ValueError) as err:
        PrivacyBudget(**args)
    assert fragment in str(err.value)


def test_exported_names_and_error_hierarchy():
    assert issubclass(BudgetExhaustedError, DPFusionError) and issubclass(BudgetExhaustedError, RuntimeError)
    budget = make("memory://", on_exhausted="redact", per_unit={"vip": 4.0})
    assert (budget.alpha, budget.delta, budget.epsilon, budget.on_exhausted) == (ALPHA, DELTA, 10.0, "redact")
    assert isinstance(budget.ledger, Ledger) and budget.limit("vip") == 4.0 and budget.limit("other") == 10.0
    assert PrivacyBudget(epsilon=10.0, ledger=budget.ledger).ledger is budget.ledger


def test_default_ledger_is_a_sqlite_file_in_the_user_data_dir(tmp_path, monkeypatch):
    import platformdirs

    monkeypatch.delenv("DPFUSION_LEDGER", raising=False)
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda app: str(tmp_path / "data" / app))
    budget = PrivacyBudget(epsilon=10.0)
    assert budget.ledger.url == f"sqlite:///{tmp_path}/data/dpfusion-chains/budget.db"
    assert (tmp_path / "data" / "dpfusion-chains" / "budget.db").is_file()
    monkeypatch.setenv("DPFUSION_LEDGER", f"sqlite:///{tmp_path}/env.db")
    assert PrivacyBudget(epsilon=10.0).ledger.url == f"sqlite:///{tmp_path}/env.db"


# -- the filter, on every backend ----------------------------------------------------------------


def test_reserve_settle_and_read_back(ledger_url):
    budget = make(ledger_url)
    assert budget.spent("rec-7") == 0.0 and budget.spent_rdp("rec-7") == 0.0 and budget.remaining("rec-7") == 10.0
    with budget.reserve({"rec-7", "rec-9"}, rdp=0.5, call_id="c-1", model="smollm2") as r:
        assert isinstance(r, Reservation) and r.units == {"rec-7", "rec-9"}
        assert budget.spent_rdp("rec-7") == pytest.approx(0.5)  # the worst case is held while the call runs
        r.settle(rdp=0.3, tokens=12)
    for unit in ("rec-7", "rec-9"):
        assert budget.spent_rdp(unit) == pytest.approx(0.3)
        assert budget.spent(unit) == pytest.approx(rdp_to_epsilon(0.3, ALPHA, DELTA))
        assert budget.remaining(unit) == pytest.approx(10.0 - rdp_to_epsilon(0.3, ALPHA, DELTA))
    assert budget.units() == ["rec-7", "rec-9"]
    rows = budget.entries("rec-7")
    assert len(rows) == 1
    row = rows[0]
    assert (row.call_id, row.unit, row.alpha, row.rdp, row.reserved_rdp, row.tokens, row.model, row.status) == (
        "c-1", "rec-7", ALPHA, pytest.approx(0.3), pytest.approx(0.5), 12, "smollm2", "settled"
    )
    assert row.epsilon == pytest.approx(rdp_to_epsilon(0.3, ALPHA, DELTA))
    assert row.settled_at is not None and row.settled_at >= row.created_at


def test_leaving_without_settle_charges_in_full_even_on_error(ledger_url):
    budget = make(ledger_url)
    with budget.reserve({"doc"}, rdp=0.5):
        pass
    with pytest.raises(KeyError):
        with budget.reserve({"doc"}, rdp=0.25):
            raise KeyError("generation failed")
    assert budget.spent_rdp("doc") == pytest.approx(0.75)
    assert [e.status for e in budget.entries("doc")] == ["settled", "settled"]
    assert [e.rdp for e in budget.entries("doc")] == [pytest.approx(0.5), pytest.approx(0.25)]


def test_release_refunds_and_an_unsettled_reservation_stays_charged(ledger_url):
    budget = make(ledger_url)
    budget.reserve({"doc"}, rdp=0.5, call_id="open")  # never settled nor released
    r = budget.reserve({"doc"}, rdp=0.5, call_id="refused-early")
    r.release()
    assert budget.spent_rdp("doc") == pytest.approx(0.5)
    assert {e.call_id: e.status for e in budget.entries()} == {"open": "reserved", "refused-early": "settled"}


def test_idempotent_by_call_id(ledger_url):
    budget = make(ledger_url)
    with budget.reserve({"a", "b"}, rdp=0.5, call_id="c-1") as r:
        r.settle(rdp=0.3, tokens=4)
        r.settle(rdp=0.1, tokens=1)  # settling again changes nothing
    replay = budget.reserve({"a"}, rdp=0.5, call_id="c-1")  # a replayed call: covered, not charged again
    assert replay.replayed
    with replay:
        replay.settle(rdp=0.0)  # cannot lower the first call's charge
    assert budget.spent_rdp("a") == pytest.approx(0.3) and budget.spent_rdp("b") == pytest.approx(0.3)
    assert len(budget.entries()) == 2
    with pytest.raises(ValueError, match="new call_id"):
        budget.reserve({"a", "c"}, rdp=0.5, call_id="c-1")  # would let unit c through uncharged
    with pytest.raises(ValueError, match="new call_id"):
        budget.reserve({"a"}, rdp=0.9, call_id="c-1")  # a bigger worst case than the one reserved
    assert budget.spent_rdp("c") == 0.0 and len(budget.entries()) == 2


def test_generated_call_ids_are_unique(ledger_url):
    budget = make(ledger_url)
    ids = {budget.reserve({"u"}, rdp=0.01).call_id for _ in range(5)}
    assert len(ids) == 5 and budget.spent_rdp("u") == pytest.approx(0.05)


def test_settle_above_reserved_is_rejected_and_changes_nothing(ledger_url):
    budget = make(ledger_url)
    r = budget.reserve({"a", "b"}, rdp=0.5, call_id="c-1")
    with pytest.raises(ValueError, match="reserved only"):
        r.settle(rdp=0.6)
    with pytest.raises(ValueError, match="reserved only"):
        r.settle(rdp={"a": 0.1, "b": 0.7})
    with pytest.raises(ValueError, match="exactly the reserved units"):
        r.settle(rdp={"a": 0.1})
    with pytest.raises(ValueError, match="tokens"):
        r.settle(rdp=0.1, tokens=-3)
    assert not r.done and budget.spent_rdp("a") == pytest.approx(0.5)
    r.settle(rdp={"a": 0.1, "b": 0.2}, tokens=3)
    assert (budget.spent_rdp("a"), budget.spent_rdp("b")) == (pytest.approx(0.1), pytest.approx(0.2))
    # The ledger enforces the same rule on its own (a caller bypassing Reservation).
    budget.reserve({"a"}, rdp=0.2, call_id="c-2")
    with pytest.raises(ValueError, match="may not cost more"):
        budget.ledger.settle("c-2", {"a": 0.3}, tokens=None, delta=DELTA)
    assert budget.spent_rdp("a") == pytest.approx(0.3)


def test_per_unit_amounts(ledger_url):
    budget = make(ledger_url)
    with budget.reserve({"a": 0.4, "b": 0.2}, call_id="c") as r:
        assert r.reserved == {"a": 0.4, "b": 0.2}
    assert (budget.spent_rdp("a"), budget.spent_rdp("b")) == (pytest.approx(0.4), pytest.approx(0.2))
    with pytest.raises(ValueError, match="not both"):
        budget.reserve({"a": 0.1}, rdp=0.1)
    with pytest.raises(ValueError, match="rdp= is required"):
        budget.reserve({"a"})
    with pytest.raises(ValueError, match="rdp must be"):
        budget.reserve({"a"}, rdp=-0.1)
    assert budget.reserve("single-unit-id", rdp=0.1).units == {"single-unit-id"}  # a str is one unit


def test_exhaustion_is_all_or_nothing_with_a_helpful_error(ledger_url):
    budget = make(ledger_url, per_unit={"vip": 4.0})
    cap_vip = epsilon_to_rdp_cap(4.0, ALPHA, DELTA)
    budget.reserve({"vip"}, rdp=cap_vip - 0.1, call_id="first")
    assert budget.fits({"vip", "other"}, rdp=0.2) == {"vip"}
    assert budget.fits({"vip": 0.05, "other": 0.2}) == set()
    with pytest.raises(BudgetExhaustedError) as err:
        budget.reserve({"vip", "other"}, rdp=0.2, call_id="second")
    exc = err.value
    assert exc.units == {"vip"} and "'vip'" in str(exc) and "on_exhausted" in str(exc)
    assert exc.remaining["vip"] == pytest.approx(4.0 - rdp_to_epsilon(cap_vip - 0.1, ALPHA, DELTA))
    assert pickle.loads(pickle.dumps(exc)).units == {"vip"}
    # Nothing of the refused call was charged, not even to the unit that fitted.
    assert budget.spent_rdp("other") == 0.0 and budget.spent_rdp("vip") == pytest.approx(cap_vip - 0.1)
    assert [e.call_id for e in budget.entries()] == ["first"]
    assert budget.remaining("vip") < 4.0 and budget.remaining("other") == 10.0


def test_a_reservation_exactly_at_the_cap_fits(ledger_url):
    budget = make(ledger_url)
    cap = epsilon_to_rdp_cap(10.0, ALPHA, DELTA)
    steps = 64
    per_step = cap / steps  # how an engine calibrates: max_new_tokens · ρ_step == cap up to rounding
    budget.reserve({"u"}, rdp=per_step * steps)
    assert budget.spent("u") == pytest.approx(10.0) and budget.remaining("u") == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(BudgetExhaustedError):
        budget.reserve({"u"}, rdp=1e-6)
    assert budget.fits({"u"}, rdp=0.0) == set()  # a call that costs nothing always fits


def test_zero_limit_blocks_a_unit(ledger_url):
    budget = make(ledger_url, per_unit={"blocked": 0.0})
    with pytest.raises(BudgetExhaustedError):
        budget.reserve({"blocked"}, rdp=1e-9)
    assert budget.remaining("blocked") == 0.0


def test_alpha_mismatch_is_refused(ledger_url):
    budget = make(ledger_url)
    with pytest.raises(AlphaMismatchError, match="alpha=8"):
        budget.check_alpha(2.0)
    budget.check_alpha(8)  # same order, int or float
    with pytest.raises(ValueError, match="alpha=2"):
        budget.reserve({"u"}, rdp=0.1, alpha=2.0)
    budget.reserve({"u"}, rdp=0.1, alpha=8.0)
    # Another budget at another order on the same ledger must not add its RDP to this unit's.
    other = PrivacyBudget(epsilon=20.0, delta=DELTA, alpha=4.0, ledger=budget.ledger)
    with pytest.raises(AlphaMismatchError, match="'u' \\(alpha=8\\)"):
        other.reserve({"u", "fresh"}, rdp=0.1)
    with pytest.raises(AlphaMismatchError):
        other.spent("u")
    assert other.fits({"u", "fresh"}, rdp=0.1) == {"u"}
    assert budget.spent_rdp("u") == pytest.approx(0.1) and other.spent_rdp("fresh") == 0.0


def test_reset_forgets_one_unit(ledger_url):
    budget = make(ledger_url)
    running = budget.reserve({"a", "b"}, rdp=0.5, call_id="c-1")
    budget.reserve({"a"}, rdp=0.5, call_id="c-2")
    assert budget.reset("a") == 2
    assert budget.spent("a") == 0.0 and budget.units() == ["b"] and budget.entries("a") == []
    running.settle(rdp=0.2)  # the call's remaining unit settles normally
    assert budget.spent_rdp("b") == pytest.approx(0.2)
    assert budget.reset("never-seen") == 0


def test_epsilon_column_is_the_units_total_after_the_call(ledger_url):
    budget = make(ledger_url)
    with budget.reserve({"u"}, rdp=1.0) as r:
        r.settle(rdp=0.5)
    budget.reserve({"u"}, rdp=0.25)
    first, second = budget.entries("u")
    assert first.epsilon == pytest.approx(0.5 + OFFSET)
    assert second.epsilon == pytest.approx(0.75 + OFFSET) and second.status == "reserved"


def test_empty_unit_set_is_a_no_op(ledger_url):
    budget = make(ledger_url)
    with budget.reserve(set(), rdp=0.5) as r:
        r.settle(rdp=0.1)
    assert budget.entries() == [] and budget.units() == []


def test_rows_hold_no_text_but_ids_numbers_and_model(ledger_url):
    budget = make(ledger_url)
    with budget.reserve({"patient-17"}, rdp=0.4, call_id="call-1", model="smollm2") as r:
        r.settle(rdp=0.1, tokens=3)
    budget.reserve({"patient-17"}, rdp=0.1, call_id="call-2", model="qwen")
    allowed = {"patient-17", "call-1", "call-2", "smollm2", "qwen", "reserved", "settled"}
    for entry in budget.entries():
        strings = {v for k, v in entry.as_dict().items() if isinstance(v, str) and not k.endswith("_at")}
        assert strings <= allowed
    with pytest.raises(ValueError, match="never the text itself"):
        budget.reserve({"Jane Roe was admitted on 3 May\nwith chest pain"}, rdp=0.1)
    with pytest.raises(ValueError, match="never the text itself"):
        budget.reserve({"x" * 300}, rdp=0.1)


def test_pickled_budget_uses_the_same_ledger(shared_url):
    budget = make(shared_url)
    budget.reserve({"u"}, rdp=0.3)
    copy = pickle.loads(pickle.dumps(budget))
    copy.reserve({"u"}, rdp=0.2)
    assert budget.spent_rdp("u") == pytest.approx(0.5)
    assert open_ledger(shared_url).states()["u"].rdp == pytest.approx(0.5)


def test_memory_ledger_is_fresh_each_time():
    a, b = make("memory://"), make("memory://")
    a.reserve({"u"}, rdp=0.3)
    assert b.spent("u") == 0.0


def test_replayed_subset_settles_as_a_no_op_and_numpy_numbers_work(ledger_url):
    np = pytest.importorskip("numpy")
    budget = make(ledger_url)
    budget.reserve({"a", "b"}, rdp=np.float32(0.5), call_id="c-1")
    replay = budget.reserve({"a"}, rdp=0.5, call_id="c-1")
    assert replay.replayed and replay.units == {"a", "b"}
    replay.settle({"a": 0.1}, tokens=np.int64(2))
    assert budget.spent_rdp("a") == pytest.approx(0.5)
    with budget.reserve({"c"}, rdp=np.float64(0.5)) as r:
        r.settle(np.float64(0.25), tokens=np.int64(7))
    assert budget.entries("c")[0].tokens == 7 and budget.spent_rdp("c") == pytest.approx(0.25)
