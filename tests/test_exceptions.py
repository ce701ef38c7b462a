"""The exception tree: one root, each also the builtin it means, messages naming culprits."""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import re

import pytest

from hephaestus import exceptions
from hephaestus.exceptions import (
    AlreadyRunning,
    AmbiguousResume,
    HephaestusError,
    InstanceLoadError,
    InstanceLost,
    InstanceNotFound,
    InvalidStepResult,
    NotSerializable,
    NotWaiting,
    RouteError,
    StepFailed,
    StorageError,
    StorageHeld,
    UndeclaredEvent,
    WorkflowDefinitionError,
)

TREE = [
    (WorkflowDefinitionError, TypeError),
    (InstanceNotFound, LookupError),
    (AlreadyRunning, ValueError),
    (NotWaiting, ValueError),
    (UndeclaredEvent, ValueError),
    (AmbiguousResume, ValueError),
    (InvalidStepResult, TypeError),
    (RouteError, ValueError),
    (StepFailed, RuntimeError),
    (NotSerializable, TypeError),
    (StorageError, RuntimeError),
    (InstanceLoadError, StorageError),
    (InstanceLost, StorageError),
    (StorageHeld, RuntimeError),
]


class TestTree:
    """HephaestusError at the root; each exception also the builtin it means."""

    def test_root(self) -> None:
        """The root is an Exception."""
        assert issubclass(HephaestusError, Exception)

    @pytest.mark.parametrize(("error", "builtin"), TREE, ids=[e.__name__ for e, _ in TREE])
    def test_branch(self, error: type[Exception], builtin: type[Exception]) -> None:
        """Each exception subclasses HephaestusError and its builtin."""
        assert issubclass(error, HephaestusError)
        assert issubclass(error, builtin)

    @pytest.mark.parametrize("name", exceptions.__all__)
    def test_every_exception_is_in_the_tree(self, name: str) -> None:
        """Every exception the module exports descends from HephaestusError and is drawn."""
        assert issubclass(getattr(exceptions, name), HephaestusError)
        assert re.search(rf"(─ |^\s*){name}\b", exceptions.__doc__ or "", re.MULTILINE)

    def test_docstring_draws_every_branch(self) -> None:
        """The module docstring draws the tree with every exception and its builtin."""
        doc = exceptions.__doc__ or ""
        for error, builtin in TREE:
            if issubclass(builtin, HephaestusError):  # a sub-branch: drawn under its parent
                assert re.search(rf"[└├]── {error.__name__}\b", doc)
            else:
                assert f"{error.__name__} ({builtin.__name__})" in doc


class TestMessages:
    """Messages name the culprit."""

    def test_workflow_definition_error(self) -> None:
        """The message names the workflow and lists every problem."""
        error = WorkflowDefinitionError("OrderFlow", ["step Ship is unreachable", "cycle A -> A"])
        assert (
            "OrderFlow is not a valid workflow (2 problems):\n"
            "  - step Ship is unreachable\n"
            "  - cycle A -> A"
        ) == str(error)
        assert "OrderFlow" == error.workflow
        assert ("step Ship is unreachable", "cycle A -> A") == error.problems

    def test_workflow_definition_error_singular(self) -> None:
        """One problem is said in the singular."""
        assert "F is not a valid workflow (1 problem):\n  - x" == str(
            WorkflowDefinitionError("F", ["x"])
        )

    def test_instance_not_found(self) -> None:
        """The message names the id, quoted once."""
        error = InstanceNotFound("abc123")
        assert "no workflow instance has id 'abc123'" == str(error)
        assert "abc123" == error.instance_id

    def test_already_running(self) -> None:
        """The message names the id."""
        error = AlreadyRunning("orderid::42")
        assert "an active workflow instance already has id 'orderid::42'" == str(error)
        assert "orderid::42" == error.instance_id

    def test_undeclared_event(self) -> None:
        """The message names the step, the event and what it declares."""
        error = UndeclaredEvent("Charge", "refunded", ("charged", "declined"))
        assert (
            "step Charge does not declare event 'refunded'; it declares 'charged', 'declined'"
            == str(error)
        )
        assert ("Charge", "refunded", ("charged", "declined")) == (
            error.step,
            error.event,
            error.declared,
        )

    def test_undeclared_event_declaring_nothing(self) -> None:
        """A step that declares nothing says so."""
        assert "step X does not declare event 'a'; it declares nothing" == str(
            UndeclaredEvent("X", "a", ())
        )

    def test_step_failed(self) -> None:
        """The message names the step, the kind and the reason."""
        error = StepFailed("Charge", "timeout", "no answer in 5.0 s")
        assert "step Charge failed (timeout): no answer in 5.0 s" == str(error)
        assert ("Charge", "timeout", "no answer in 5.0 s") == (error.step, error.kind, error.reason)

    @pytest.mark.parametrize(
        "error",
        [
            NotWaiting,
            AmbiguousResume,
            InvalidStepResult,
            RouteError,
            NotSerializable,
            StorageError,
            InstanceLoadError,
        ],
    )
    def test_plain_message(self, error: type[Exception]) -> None:
        """The other exceptions carry the message they are given."""
        assert "instance 'i-1' has no waiting step Hold" == str(
            error("instance 'i-1' has no waiting step Hold")
        )

    def test_instance_lost_names_the_instance(self) -> None:
        """An instance taken over is named, and is not a transient failure: retrying cannot help."""
        error = InstanceLost("order-7")
        assert "order-7" == error.instance_id
        assert "'order-7'" in str(error)
        assert not error.transient

    def test_catch_by_builtin(self) -> None:
        """An unknown instance can be caught as a LookupError."""
        with pytest.raises(LookupError):
            raise InstanceNotFound("gone")
