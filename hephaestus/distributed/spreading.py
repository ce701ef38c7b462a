"""Steps that run on any worker (``Step.spread``): the job that runs one, and its answer.

The worker driving an instance runs its steps itself, except those whose
class sets ``spread = True``: for each run of such a step (a map's item, a
fan-out's branch, each attempt of it) the driver defers a ``heph.step`` job
on the schema's steps queue and awaits its answer. Whichever worker takes the
job reads the instance as stored, runs the step's ``execute`` (under its
timeout, in a thread when ``blocking``) and posts the outcome to the
instance's inbox as a ``result`` letter, with a notification: one statement.
The driver folds it as if the step had run in its own process: retries,
telemetry, history and checkpoints stay with the driver.

A run whose driver went away (its worker died, the instance was cancelled or
moved on) answers no one: its letter is discarded, and the instance's next
driver runs the step again (steps are at least once). A cancelled run's job
is aborted, which cancels the step where it runs.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from hephaestus._show import shown, storable, text_of
from hephaestus.core.step import Async, Config, Error, Ok, Result, Step
from hephaestus.exceptions import RemoteStepError, StepTimeout
from hephaestus.runtime.storage import codec

if TYPE_CHECKING:
    from hephaestus.distributed._backend import Backend
    from hephaestus.distributed.driving import Driver

__all__ = ["STEP", "answer_of", "run_here"]

STEP = "heph.step"
"""The procrastinate task that runs one step of an instance driven elsewhere."""


class _Shown:
    """What a remote ``execute`` returned that is no result, shown as it was there."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def outcome_of(result: object) -> dict[str, Any]:
    """A step's return value as JSON, for its driver (``answer_of`` reads it back)."""
    kind = type(result)
    if kind is Ok:
        ok: Ok = result  # type: ignore[assignment]
        return {
            "ok": codec.encode_value(ok.event, "event"),
            "updates": None if ok.updates is None else codec.encode_value(ok.updates, "updates"),
            "metadata": (
                None if ok.metadata is None else codec.encode_value(ok.metadata, "metadata")
            ),
        }
    if kind is Async:
        return {"async": True}
    if kind is Error:
        return {"error": codec.reason_text(result.reason)}  # type: ignore[attr-defined]
    return {"invalid": storable(shown(result, 2000))}


def failure_of(exc: BaseException) -> dict[str, Any]:
    """A step's exception as JSON: its text and frames (a timeout: its text only)."""
    if isinstance(exc, StepTimeout):
        return {"raised": "timeout", "text": storable(str(exc))}
    frames = [
        [frame.filename, frame.lineno, frame.name, frame.line]
        for frame in traceback.extract_tb(exc.__traceback__)
    ]
    return {"raised": "exception", "text": storable(text_of(exc)), "frames": frames}


def answer_of(outcome: Mapping[str, Any]) -> Result:
    """The driver's side: what the step returned, or its exception raised again here."""
    if "ok" in outcome:
        return Ok(outcome["ok"], outcome["updates"], outcome["metadata"])
    if "async" in outcome:
        return Async()
    if "error" in outcome:
        return Error(outcome["error"])
    if "invalid" in outcome:
        return _Shown(outcome["invalid"])  # type: ignore[return-value]  # the fold refuses it
    if outcome["raised"] == "timeout":
        raise StepTimeout(outcome["text"])
    frames = [
        traceback.FrameSummary(filename, lineno, name, line=line)
        for filename, lineno, name, line in outcome["frames"]
    ]
    raise RemoteStepError(outcome["text"], frames)


async def run_here(
    driver: Driver,
    backend: Backend,
    instance_id: str,
    path: str,
    item: int | None,
    token: str,
    carried: Mapping[str, str] | None = None,
) -> None:
    """The ``heph.step`` job: run the step on the stored instance and post its outcome.

    What the driver's step-scope hooks ``carried`` is added to the instance's
    ``telemetry_metadata`` for this run's own hooks (its trace context).
    """
    instance = await backend.storage.get(instance_id)
    if instance is None or instance.terminal:
        return  # deleted, or cancelled meanwhile: nobody waits
    if carried:
        metadata = {**instance.telemetry_metadata, **carried}
        instance = attrs.evolve(instance, telemetry_metadata=metadata)
    step: type[Step] = codec.resolve(path)
    config: Config = instance.step_configs.get(step)
    if item is not None:
        mapped = instance.maps.get(step)
        if mapped is None or item >= len(mapped.items):
            return  # the instance moved on: its driver no longer waits for this run
        config = {**config} if config else {}
        config["item"] = mapped.items[item]
        config["index"] = item
    try:
        outcome = outcome_of(await driver.call_here(step, instance, config, item))
    except Exception as exc:
        outcome = failure_of(exc)
    await backend.answer(instance_id, token, outcome)
