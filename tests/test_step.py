"""Steps: results, the retry policy, step keys and the base class's defaults."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import re
from typing import Any

import attrs
import pytest

from hephaestus import Async, Error, Ok, Retry, Step
from hephaestus.core.step import snake_case


class TestOk:
    """Ok(event, updates, metadata)."""

    def test_defaults(self) -> None:
        """Updates and metadata default to None."""
        ok = Ok("valid")
        assert ("valid", None, None) == (ok.event, ok.updates, ok.metadata)

    def test_fields(self) -> None:
        """Ok keeps the event, the updates and the metadata it was given."""
        ok = Ok("valid", {"count": 3}, {"source": "api"})
        assert ("valid", {"count": 3}, {"source": "api"}) == (ok.event, ok.updates, ok.metadata)

    def test_equality(self) -> None:
        """Two Ok are equal when event, updates and metadata are."""
        assert Ok("a", {"x": 1}) == Ok("a", {"x": 1})
        assert Ok("a") != Ok("b")
        assert Ok("a", {"x": 1}) != Ok("a", {"x": 2})
        assert Ok("a", None, {"m": 1}) != Ok("a")

    def test_not_equal_to_other_types(self) -> None:
        """An Ok equals no other kind of value."""
        assert Ok("a") != "a"
        assert Ok("a") != ("a", None, None)
        assert Ok("a") != Error("a")

    def test_unhashable(self) -> None:
        """Ok holds mappings, so like a dict it is unhashable."""
        with pytest.raises(TypeError):
            hash(Ok("a"))

    def test_repr(self) -> None:
        """The repr shows every field."""
        assert "Ok('a', updates={'x': 1}, metadata=None)" == repr(Ok("a", {"x": 1}))

    def test_match(self) -> None:
        """Ok matches positionally on event, updates, metadata."""
        match Ok("valid", {"count": 3}):
            case Ok(event, updates, metadata):
                assert ("valid", {"count": 3}, None) == (event, updates, metadata)
            case _:
                pytest.fail("Ok did not match")

    def test_slotted(self) -> None:
        """Ok is slotted: no attribute beyond its three fields."""
        with pytest.raises(AttributeError):
            Ok("a").extra = 1  # type: ignore[attr-defined]


class TestAsync:
    """Async()."""

    def test_equality_and_hash(self) -> None:
        """Every Async equals every other, and they hash alike."""
        assert Async() == Async()
        assert hash(Async()) == hash(Async())
        assert Async() != Ok("a")

    def test_repr(self) -> None:
        """The repr reads as the call that builds it."""
        assert "Async()" == repr(Async())


class TestError:
    """Error(reason)."""

    def test_reason(self) -> None:
        """Error keeps its reason, and compares by it."""
        assert "card declined" == Error("card declined").reason
        assert Error("x") == Error("x")
        assert Error("x") != Error("y")

    def test_frozen(self) -> None:
        """An Error cannot be changed."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            Error("x").reason = "y"  # type: ignore[misc]


class TestRetryValidation:
    """Retry refuses values it cannot honour, naming the field and the value."""

    def test_defaults(self) -> None:
        """The defaults: 3 attempts, exponential from 0.1 s, capped at 30 s, 10% jitter."""
        assert Retry(3, "exponential", 0.1, 30.0, 0.1) == Retry()

    @pytest.mark.parametrize("value", [0, -1, 1.5, "3", True])
    def test_max_attempts(self, value: Any) -> None:
        """max_attempts is an int >= 1."""
        expected = f"Retry.max_attempts must be an int >= 1, got: {value!r}"
        with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
            Retry(max_attempts=value)

    def test_backoff(self) -> None:
        """backoff is exponential, linear or constant."""
        expected = "Retry.backoff must be 'exponential', 'linear' or 'constant', got: 'random'"
        with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
            Retry(backoff="random")  # type: ignore[arg-type]

    @pytest.mark.parametrize("field", ["base", "max_backoff"])
    @pytest.mark.parametrize("value", [-0.5, "1", None, False, float("nan"), float("inf"), 1e300])
    def test_seconds(self, field: str, value: Any) -> None:
        """base and max_backoff are finite numbers of seconds from 0 to 100 years."""
        expected = (
            f"Retry.{field} must be a finite number of seconds >= 0 and at most 100 years "
            f"(3155760000), got: {value!r}"
        )
        with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
            Retry(**{field: value})

    @pytest.mark.parametrize("value", [-0.5, "1", None, False, float("nan"), 11])
    def test_jitter(self, value: Any) -> None:
        """jitter is a number from 0 to 10 (at most ten times longer)."""
        expected = f"Retry.jitter must be a number from 0 to 10, got: {value!r}"
        with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
            Retry(jitter=value)

    def test_late_attempts_stay_finite(self) -> None:
        """An exponential delay never overflows: attempt 5,000 waits max_backoff."""
        assert 30.0 == Retry(max_attempts=10_000, jitter=0).delay(5_000)

    def test_zero_is_allowed(self) -> None:
        """Zero base, cap and jitter are valid: retry at once."""
        assert 0.0 == Retry(base=0, max_backoff=0, jitter=0).delay(5)


class TestRetryDelay:
    """Retry.delay(attempt, draw): the wait before the next attempt."""

    @pytest.mark.parametrize(
        ("attempt", "expected"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0)]
    )
    def test_exponential(self, attempt: int, expected: float) -> None:
        """Exponential backoff doubles from base."""
        retry = Retry(backoff="exponential", base=0.5, max_backoff=100, jitter=0)
        assert expected == retry.delay(attempt)

    @pytest.mark.parametrize(("attempt", "expected"), [(1, 0.5), (2, 1.0), (3, 1.5)])
    def test_linear(self, attempt: int, expected: float) -> None:
        """Linear backoff grows by base each attempt."""
        retry = Retry(backoff="linear", base=0.5, max_backoff=100, jitter=0)
        assert expected == retry.delay(attempt)

    @pytest.mark.parametrize("attempt", [1, 2, 10])
    def test_constant(self, attempt: int) -> None:
        """Constant backoff always waits base."""
        assert 0.5 == Retry(backoff="constant", base=0.5, jitter=0).delay(attempt)

    def test_cap(self) -> None:
        """The wait never exceeds max_backoff (before jitter)."""
        retry = Retry(backoff="exponential", base=1, max_backoff=5, jitter=0)
        assert [1.0, 2.0, 4.0, 5.0, 5.0] == [retry.delay(n) for n in range(1, 6)]

    def test_jitter(self) -> None:
        """Jitter stretches the wait by up to its fraction, scaled by the draw."""
        retry = Retry(backoff="constant", base=2.0, jitter=0.5)
        assert [2.0, 2.5, 3.0] == [retry.delay(1, draw) for draw in (0.0, 0.5, 1.0)]

    def test_jitter_applies_after_the_cap(self) -> None:
        """A capped wait is still spread by jitter."""
        retry = Retry(backoff="exponential", base=10, max_backoff=10, jitter=0.1)
        assert pytest.approx(11.0) == retry.delay(4, 1.0)

    def test_returns_a_float(self) -> None:
        """The delay is a float even when every figure is an int."""
        assert isinstance(Retry(backoff="constant", base=1, jitter=0).delay(1), float)


class TestStepKey:
    """Step keys: snake_case of the class name unless set explicitly."""

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("ValidateOrder", "validate_order"),
            ("HTTPFetchURL", "http_fetch_url"),
            ("Step2Go", "step2_go"),
            ("Done", "done"),
            ("already_snake", "already_snake"),
            ("A", "a"),
        ],
    )
    def test_snake_case(self, name: str, expected: str) -> None:
        """The default step key is the acronym-aware snake_case of the class name."""
        assert expected == snake_case(name)
        assert expected == type(name, (Step,), {}).step_key

    def test_explicit_step_key_wins(self) -> None:
        """An explicit step_key is kept."""

        class ValidateOrder(Step):
            step_key = "validate"

        assert "validate" == ValidateOrder.step_key

    def test_explicit_step_key_not_inherited(self) -> None:
        """A subclass gets its own key, not its parent's explicit one."""

        class ValidateOrder(Step):
            step_key = "validate"

        class ValidateRefund(ValidateOrder):
            pass

        assert "validate_refund" == ValidateRefund.step_key


class TestStepDefaults:
    """What the base class provides."""

    def test_class_attributes(self) -> None:
        """No retry, no timeout, not blocking, not ending the workflow."""
        assert (None, None, False, False) == (
            Step.retry,
            Step.timeout,
            Step.blocking,
            Step.ends_workflow,
        )

    def test_execute_not_defined(self) -> None:
        """The base execute raises NotImplementedError naming the class."""
        Hollow = type("Hollow", (Step,), {})
        with pytest.raises(NotImplementedError, match=r"^Hollow\.execute is not defined$"):
            Hollow().execute(None, None, None)  # type: ignore[arg-type]

    def test_hooks(self) -> None:
        """By default a step declares its events, accepts any config and has no timer."""
        Plain = type("Plain", (Step,), {"events": ("ok",)})
        assert ("ok",) == Plain.declared_events({"any": 1})
        assert None is Plain.check_config({"any": 1})
        assert None is Plain.timer({"any": 1})
