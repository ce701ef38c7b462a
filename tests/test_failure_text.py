"""``str(instance.error)``: why an instance failed, in words, without the LogHandler."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

from typing import Any

import pytest

from hephaestus import Failure, Ok, Step, StepTimeout


class ExtractImages(Step):
    events = ("done",)
    timeout = 5

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("done")


class Charge(Step):
    events = ("charged",)

    def execute(self, instance: Any, config: Any, context: Any) -> Ok:
        return Ok("charged")


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


class TestFailureText:
    @pytest.mark.parametrize(
        ("failure", "text"),
        [
            (
                Failure(ExtractImages, "timeout", StepTimeout("step ExtractImages timed out")),
                "step ExtractImages failed: timed out after 5 s (timeout)",
            ),
            (
                Failure(Charge, "exception", ValueError("card declined")),
                "step Charge failed: ValueError: card declined (exception)",
            ),
            (
                Failure(Charge, "error", "card declined"),
                "step Charge failed: card declined (error)",
            ),
            (
                Failure(Charge, "error", {"code": 402}),
                "step Charge failed: {'code': 402} (error)",
            ),
            (
                Failure(Charge, "exception", ValueError("not an image"), item=3),
                "step Charge (item 3) failed: ValueError: not an image (exception)",
            ),
        ],
    )
    def test_str_says_which_step_failed_and_why(self, failure: Failure, text: str) -> None:
        """str(failure) names the step (and the item), says what went wrong and its kind."""
        assert text == str(failure)

    def test_a_timeout_loaded_from_a_storage(self) -> None:
        """A stored timeout's reason is text: it still reads as the step's timeout."""
        failure = Failure(ExtractImages, "timeout", "StepTimeout: step ExtractImages timed out")
        assert "timed out after 5 s" == failure.explanation

    def test_a_timeout_of_a_fraction_of_a_second(self) -> None:
        """A timeout is shown as the step declares it, to the millisecond."""

        class Quick(ExtractImages):
            timeout = 0.25

        assert "timed out after 0.25 s" == Failure(Quick, "timeout", None).explanation

    def test_a_reason_whose_str_raises(self) -> None:
        """The text never raises: a reason that cannot be shown says so."""
        assert str(Failure(Charge, "exception", Unprintable())).startswith(
            "step Charge failed: Unprintable: <message that cannot be shown"
        )

    def test_repr_is_unchanged(self) -> None:
        """repr stays the fields, for debugging."""
        assert repr(Failure(Charge, "error", "x")).startswith("Failure(step=")
