"""DistributedRunner with an in-process Worker, against a real PostgreSQL.

Each test has a schema of its own. The runner writes instances and letters
(resumes, messages, timers); the worker (same process, same event loop) runs
the drive jobs, each of which drives one instance on the LocalRunner's driver.
Tests look at the runner's answers, at the instance's history
(``runner.history``), and at the rows of ``heph_instances``, ``heph_inbox`` and
procrastinate's jobs.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import pytest

from hephaestus import (
    AlreadyRunning,
    AmbiguousResume,
    Done,
    InstanceNotFound,
    NotSerializable,
    NotWaiting,
    Record,
    RunnerStopped,
    Status,
    UndeclaredEvent,
    Wait,
    WaitForEvent,
    telemetry,
)
from hephaestus.distributed import DistributedRunner, Worker
from hephaestus.distributed.driving import Driver
from hephaestus.telemetry import (
    engine_advance_event,
    runner_init_event,
    step_async_event,
    step_exception_event,
    step_resume_event,
    step_start_event,
    step_stop_event,
    workflow_exception_event,
    workflow_start_event,
    workflow_stop_event,
    workflow_transition_event,
)
from hephaestus.testing import capture_events

from . import flows
from .conftest import (
    GUARD,
    Database,
    drop_schema,
    eventually,
    fresh_schema,
    parked,
    path,
    until,
    worker,
)

Captured = tuple[Any, dict[str, Any], dict[str, Any]]


def of(events: list[Captured], name: Any, instance_id: str | None = None) -> list[Captured]:
    """The captured events called ``name`` (of ``instance_id`` if given), in order."""
    return [
        event
        for event in events
        if event[0] == name and (instance_id is None or event[2].get("instance_id") == instance_id)
    ]


def source(record: Record) -> str | None:
    """Who resumed a ``resumed`` record's step (``external``, ``message``, ``timeout``)."""
    return None if record.details is None else record.details.get("source")


def details(record: Record) -> Mapping[str, Any]:
    """The record's details (which its kind has)."""
    assert record.details is not None, record
    return record.details


def resumes(records: list[Record]) -> list[tuple[str | None, str | None, str | None]]:
    """``(step, event, source)`` of each ``resumed`` record."""
    return [(r.step, r.event, source(r)) for r in records if r.kind == "resumed"]


def completed(records: list[Record]) -> list[tuple[str | None, int | None, str | None]]:
    """``(step, attempt, event)`` of each ``step_completed`` record."""
    return [(r.step, r.attempt, r.event) for r in records if r.kind == "step_completed"]


class TestRunning:
    async def test_linear(self, runner: DistributedRunner, db: Database) -> None:
        """A linear workflow completes in one drive job, each step's result recorded once."""
        instance = await runner.run(flows.Linear, {"n": 1}, id="linear", timeout=GUARD)

        assert Status.COMPLETED == instance.status
        assert [("First", "done"), ("Second", "done"), ("Done", "done")] == path(instance)
        assert {"n": 2} == instance.context.steps["first"]
        assert {"n": 20} == instance.context.steps["second"]
        assert {"first_ran": True} == instance.runtime_metadata
        assert [
            ("started", None, None, None),
            ("step_completed", "first", 1, "done"),
            ("step_completed", "second", 1, "done"),
            ("step_completed", "done", 1, "done"),
            ("completed", None, None, None),
        ] == [(r.kind, r.step, r.attempt, r.event) for r in await runner.history("linear")]
        assert ["succeeded"] == await db.settled("linear")
        # One drive job, run once (procrastinate counts every finished run in `attempts`).
        assert [("heph.drive", "succeeded", 1)] == await db.jobs("linear")

    async def test_fan_out_and_join(self, runner: DistributedRunner, db: Database) -> None:
        """Three parallel steps each complete once; the join runs once, after all three."""
        probe = flows.probe("fan")
        instance = await runner.run(flows.FanOut, {}, id="fan", timeout=GUARD)

        assert Status.COMPLETED == instance.status
        steps = [step for step, _, _ in completed(await runner.history("fan"))]
        assert ["prepare"] == steps[:1]
        assert {"left", "middle", "right"} == set(steps[1:4])
        assert ["merge", "done"] == steps[4:]
        assert 1 == probe.calls.count("merge")
        assert ["prepare"] == probe.calls[:1]
        assert {"left", "middle", "right"} == set(probe.calls[1:4])
        assert ["left", "middle", "prepare", "right"] == instance.context.steps["merge"]["saw"]
        assert ("Merge", "merged") == path(instance)[-2]
        # Steps are not jobs: the branches ran concurrently inside the one drive job.
        assert ["succeeded"] == await db.settled("fan")

    @pytest.mark.parametrize(("express", "chosen"), [(True, "express"), (False, "standard")])
    async def test_a_route_chooses(
        self, runner: DistributedRunner, express: bool, chosen: str
    ) -> None:
        """A Route runs the step its chooser picks; the other never runs."""
        probe = flows.probe("route")
        instance = await runner.run(flows.Routed, {"express": express}, id="route", timeout=GUARD)

        assert Status.COMPLETED == instance.status
        assert [("Choose", "chosen"), (chosen.title(), "shipped"), ("Done", "done")] == path(
            instance
        )
        assert ["choose", chosen] == probe.calls
        assert [("choose", 1, "chosen"), (chosen, 1, "shipped"), ("done", 1, "done")] == (
            completed(await runner.history("route"))
        )

    async def test_step_config(self, runner: DistributedRunner) -> None:
        """Steps get the config their transition gives them (the start step's too)."""
        instance = await runner.run(flows.Configured, {"name": "Ada"}, timeout=GUARD)

        assert Status.COMPLETED == instance.status
        assert {"said": "hello, Ada"} == instance.context.steps["greet"]
        assert {"said": ["hello, Ada", "hello, Ada"]} == instance.context.steps["repeat"]

    async def test_a_map_runs_each_item_and_keeps_their_order(
        self, runner: DistributedRunner
    ) -> None:
        """A Map runs its step once per item; the outputs are kept in the items' order."""
        probe = flows.probe("mapped")
        instance = await runner.run(
            flows.Mapped, {"n": 1, "numbers": [3, 1, 2]}, id="mapped", timeout=GUARD
        )

        assert Status.COMPLETED == instance.status
        assert [
            {"value": 6, "index": 0},
            {"value": 2, "index": 1},
            {"value": 4, "index": 2},
        ] == instance.context.steps["scale"]["items"]
        assert 3 == probe.calls.count("scale")
        records = await runner.history("mapped")
        assert [("scale", {"items": 3})] == [
            (r.step, r.details) for r in records if r.kind == "map_started"
        ]
        assert {0, 1, 2} == {
            r.item for r in records if r.kind == "step_completed" and r.step == "scale"
        }
        assert [("First", "done"), ("Done", "done")] == [
            entry for entry in path(instance) if entry[0] != "Scale"
        ]

    async def test_a_wait_times_out_by_itself(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """A Wait resumes itself with "timeout" once its time has come, woken by the poll.

        Its timer (0.2 s) falls due after the worker's poll_interval (0.05 s): the
        drive job that parked it ends, and the worker's poll starts a second one
        when the instance's ``wake_at`` has passed.
        """
        with capture_events(step_resume_event()) as resumed:
            instance = await runner.run(flows.Sleeps, {}, id="sleeps", timeout=GUARD)

        assert [("Begin", "begun"), ("Wait", "timeout"), ("After", "done"), ("Done", "done")] == (
            path(instance)
        )
        assert [(Wait, "timeout", "timeout")] == [
            (meta["step"], meta["resume_event"], meta["source"]) for _, _, meta in resumed
        ]
        assert [
            ("step_parked", None, None),
            ("timer_armed", "timeout", None),
            ("resumed", "timeout", "timeout"),
        ] == [
            (r.kind, r.event, source(r)) for r in await runner.history("sleeps") if r.step == "wait"
        ]
        assert ["succeeded", "succeeded"] == await db.settled("sleeps")
        assert ("completed", None) == (await db.instance("sleeps"))[::2]

    async def test_a_timer_due_within_the_poll_interval_fires_in_its_drive(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """A drive job keeps an instance whose timer falls due within poll_interval; fires it."""
        async with (
            worker(postgres_dsn, schema, poll_interval=5),
            DistributedRunner(postgres_dsn, schema=schema) as runner,
        ):
            instance = await runner.run(flows.Sleeps, {}, id="kept", timeout=GUARD)
            statuses = await db.settled("kept")
            records = await runner.history("kept")

        assert Status.COMPLETED == instance.status
        assert [("wait", "timeout", "timeout")] == resumes(records)
        assert ["succeeded"] == statuses


class TestResume:
    async def test_async_and_resume(self, runner: DistributedRunner, db: Database) -> None:
        """An Async step parks the instance; a resume carries it on with the given event."""
        iid = await runner.start(flows.Parks, {}, id="parks")
        waiting = await parked(runner, iid, flows.Hold)
        assert Status.WAITING == waiting.status

        await runner.resume(iid, "ok")
        instance = await runner.wait(iid, timeout=GUARD)

        assert [("Begin", "begun"), ("Hold", "ok"), ("After", "done"), ("Done", "done")] == (
            path(instance)
        )
        assert [
            ("step_parked", None, None, {"events": ["ok"]}),
            ("resumed", "ok", "external", {"source": "external", "data_keys": []}),
        ] == [
            (r.kind, r.event, source(r), r.details)
            for r in await runner.history(iid)
            if r.step == "hold"
        ]
        assert [] == await db.inbox(iid)

    async def test_data_with_a_resume_lands_in_the_context(self, runner: DistributedRunner) -> None:
        """The resumed step's output is the data sent with the resume; the history has its keys."""
        iid = await runner.start(flows.Parks, {}, id="parks-data")
        await parked(runner, iid, flows.Hold)
        await runner.resume(iid, "ok", {"by": "ada"})
        instance = await runner.wait(iid, timeout=GUARD)

        assert {"by": "ada"} == instance.context.steps["hold"]
        [resumed] = [r for r in await runner.history(iid) if r.kind == "resumed"]
        assert {"source": "external", "data_keys": ["by"]} == resumed.details

    async def test_unstorable_data_is_refused(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """Data JSON cannot hold is refused before anything is written."""
        iid = await runner.start(flows.Parks, {}, id="parks-bad")
        await parked(runner, iid, flows.Hold)
        await db.settled(iid)
        before = await db.snapshot(iid)

        with pytest.raises(NotSerializable, match="when"):
            await runner.resume(iid, "ok", {"when": object()})

        assert before == await db.snapshot(iid)
        await runner.cancel(iid)

    async def test_a_resume_waits_in_the_inbox_for_a_worker(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """With no worker running, a resume is kept in the inbox with a drive job, then applied."""
        async with DistributedRunner(postgres_dsn, schema=schema) as runner:
            async with worker(postgres_dsn, schema):
                iid = await runner.start(flows.Parks, {}, id="mailed")
                await parked(runner, iid, flows.Hold)
            # No worker runs now: nothing can apply the resume.
            await runner.resume(iid, "ok", {"by": "ada"})

            assert [("resume", "Hold", "ok", {"by": "ada"}, None)] == await db.inbox(iid)
            assert ["succeeded", "todo"] == await db.statuses(iid)
            assert Status.WAITING == (await runner.get(iid)).status

            async with worker(postgres_dsn, schema):
                instance = await runner.wait(iid, timeout=GUARD)
                statuses = await db.settled(iid)
            records = await runner.history(iid)

        assert [("Begin", "begun"), ("Hold", "ok"), ("After", "done"), ("Done", "done")] == (
            path(instance)
        )
        assert {"by": "ada"} == instance.context.steps["hold"]
        assert [("hold", "ok", "external")] == resumes(records)
        assert [] == await db.inbox(iid)
        assert ["succeeded", "succeeded"] == statuses

    async def test_a_resume_is_applied_while_another_step_runs(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """A resume sent while the drive job runs another branch is applied by that job at once."""
        probe = flows.probe("busy-drive")
        iid = await runner.start(flows.Cancellable, {}, id="busy-drive")
        await until(probe.started)  # Long runs, held by the probe
        await parked(runner, iid, WaitForEvent)

        await runner.resume(iid, "received")

        async def applied() -> bool:
            return bool(resumes(await runner.history(iid)))

        await eventually(applied, "the resume to be applied")
        assert [] == await db.inbox(iid)
        assert Status.RUNNING == (await runner.get(iid)).status
        assert not probe.release.is_set(), "Long still runs"

        probe.release.set()
        instance = await runner.wait(iid, timeout=GUARD)

        assert Status.COMPLETED == instance.status
        assert [("wait_for_event", "received", "external")] == resumes(await runner.history(iid))
        # The job the resume deferred found the instance ended and did nothing.
        assert ["succeeded", "succeeded"] == await db.settled(iid)
        assert 1 == probe.calls.count("long")

    async def test_a_resume_disarms_the_timer(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """A resume of a step that waits with a timer clears the timer: it never fires."""
        iid = await runner.start(flows.Timed, {}, id="disarmed")
        await parked(runner, iid, WaitForEvent)
        assert (await db.instance(iid))[2] is not None, "the timer is stored in wake_at"

        await runner.resume(iid, "received")
        instance = await runner.wait(iid, timeout=GUARD)

        assert [
            ("Begin", "begun"),
            ("WaitForEvent", "received"),
            ("Got", "done"),
            ("Done", "done"),
        ] == path(instance)
        assert {} == instance.timers
        assert [("wait_for_event", "received", "external")] == resumes(await runner.history(iid))
        assert "todo" not in await db.settled(iid)
        assert ("completed", None) == (await db.instance(iid))[::2]

    async def test_resume_first_then_the_timer_does_nothing(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """A timer letter applied after a resume finds the step resumed: dropped, no change."""
        async with DistributedRunner(postgres_dsn, schema=schema) as runner:
            async with worker(postgres_dsn, schema):
                iid = await runner.start(flows.Timed, {}, id="resume-first")
                await parked(runner, iid, WaitForEvent)
            # No worker: both letters are accepted (the stored step waits) and kept, in order.
            await runner.resume(iid, "received")
            await runner.schedule_resume(iid, WaitForEvent, 0)
            assert [
                ("resume", "WaitForEvent", "received", None, None),
                ("timer", "WaitForEvent", "timeout", None, 0.0),
            ] == await db.inbox(iid)

            async with worker(postgres_dsn, schema):
                instance = await runner.wait(iid, timeout=GUARD)
                statuses = await db.settled(iid)
            records = await runner.history(iid)

        assert [
            ("Begin", "begun"),
            ("WaitForEvent", "received"),
            ("Got", "done"),
            ("Done", "done"),
        ] == path(instance)
        assert [("wait_for_event", "received", "external")] == resumes(records)
        # Only the park armed a timer (60 s): the timer letter armed nothing.
        assert 1 == sum(1 for r in records if r.kind == "timer_armed")
        assert [] == await db.inbox(iid)
        assert "todo" not in statuses
        assert ("completed", None) == (await db.instance(iid))[::2]

    async def test_timer_first_then_a_resume_is_refused(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """Once the timer has resumed the step, an external resume raises NotWaiting; no change."""
        probe = flows.probe("timer-first")
        iid = await runner.start(flows.Timed, {}, id="timer-first")
        await parked(runner, iid, WaitForEvent)
        await runner.schedule_resume(iid, WaitForEvent, 0)
        await until(probe.started)  # the timer fired: TimedOut runs, held by the probe
        before = await db.snapshot(iid)

        with pytest.raises(NotWaiting):
            await runner.resume(iid, "received")

        assert before == await db.snapshot(iid)
        probe.release.set()
        instance = await runner.wait(iid, timeout=GUARD)

        assert [
            ("Begin", "begun"),
            ("WaitForEvent", "timeout"),
            ("TimedOut", "done"),
            ("Done", "done"),
        ] == path(instance)
        assert [("wait_for_event", "timeout", "timeout")] == resumes(await runner.history(iid))
        with pytest.raises(NotWaiting):
            await runner.resume(iid, "received")

    @pytest.mark.parametrize("step", [WaitForEvent, "wait_for_event"], ids=["class", "key"])
    async def test_schedule_resume(
        self, runner: DistributedRunner, db: Database, step: Any
    ) -> None:
        """schedule_resume makes the waiting step resume itself with "timeout" after the delay."""
        iid = await runner.start(flows.Timed, {}, id="scheduled")
        await parked(runner, iid, WaitForEvent)

        await runner.schedule_resume(iid, step, 0.05)
        instance = await runner.wait(iid, timeout=GUARD)

        assert ("WaitForEvent", "timeout") == path(instance)[1]
        records = await runner.history(iid)
        # The park armed the configured timer (60 s); the scheduled one replaced it and fired.
        configured, scheduled = [details(r)["due"] for r in records if r.kind == "timer_armed"]
        assert scheduled < configured
        assert [("wait_for_event", "timeout", "timeout")] == resumes(records)
        await db.settled(iid)
        assert ("completed", None) == (await db.instance(iid))[::2]
        assert [] == await db.inbox(iid)


class TestSend:
    async def test_a_message_sent_before_the_step_parks_is_taken_when_it_parks(
        self, runner: DistributedRunner
    ) -> None:
        """Sent while Hold still runs: kept with the instance, taken the moment Hold parks."""
        probe = flows.probe("early")
        iid = await runner.start(flows.Parks, {}, id="early")
        await until(probe.started)  # Hold runs: nothing waits for "ok" yet

        await runner.send(iid, "ok", {"by": "early"})

        async def kept() -> tuple[Any, ...]:
            return (await runner.get(iid)).messages

        [message] = await eventually(kept, "the message to be kept")
        assert ("ok", {"by": "early"}) == (message.event, message.data)
        probe.release.set()
        instance = await runner.wait(iid, timeout=GUARD)

        assert (Status.COMPLETED, ()) == (instance.status, instance.messages)
        assert {"by": "early"} == instance.context.steps["hold"]
        assert [
            ("message_kept", None, "ok", None),
            ("step_parked", "hold", None, None),
            ("resumed", "hold", "ok", "message"),
        ] == [
            (r.kind, r.step, r.event, source(r))
            for r in await runner.history(iid)
            if r.kind in ("message_kept", "step_parked", "resumed")
        ]

    async def test_a_message_to_a_waiting_step_is_taken_at_once(
        self, runner: DistributedRunner
    ) -> None:
        """A message for the event a parked step waits for resumes it, source "message"."""
        iid = await runner.start(flows.Parks, {}, id="told")
        await parked(runner, iid, flows.Hold)

        with capture_events(step_resume_event()) as resumed:
            await runner.send(iid, "ok", {"by": "ada"})
            instance = await runner.wait(iid, timeout=GUARD)

        assert {"by": "ada"} == instance.context.steps["hold"]
        assert [("ok", "message")] == [
            (meta["resume_event"], meta["source"]) for _, _, meta in resumed
        ]
        assert [("hold", "ok", "message")] == resumes(await runner.history(iid))

    async def test_a_message_to_an_ended_instance_is_refused(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """send() to an instance that ended raises NotWaiting and writes nothing."""
        await runner.run(flows.Linear, {"n": 1}, id="over", timeout=GUARD)
        await db.settled("over")
        before = await db.snapshot("over")

        with pytest.raises(NotWaiting, match="completed"):
            await runner.send("over", "done")

        assert before == await db.snapshot("over")

    async def test_an_event_no_step_declares_is_refused(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """send() of an event no step of the workflow declares raises UndeclaredEvent; no change."""
        iid = await runner.start(flows.Parks, {}, id="maybe")
        await parked(runner, iid, flows.Hold)
        await db.settled(iid)
        before = await db.snapshot(iid)

        with pytest.raises(
            UndeclaredEvent, match="no step of workflow Parks declares event 'maybe'"
        ):
            await runner.send(iid, "maybe")

        assert before == await db.snapshot(iid)
        assert () == (await runner.get(iid)).messages
        await runner.cancel(iid)


class TestFailures:
    async def test_retry_then_success(self, runner: DistributedRunner, db: Database) -> None:
        """A step that raises is retried (Retry.max_attempts counts every run) until it succeeds."""
        with capture_events(step_start_event(), step_exception_event()) as events:
            instance = await runner.run(flows.Retries, {"failures": 2}, id="flaky", timeout=GUARD)

        assert Status.COMPLETED == instance.status
        assert 3 == flows.ATTEMPTS["flaky"]
        assert {"attempts": 3} == instance.context.steps["flaky"]
        assert [("exception", 1), ("exception", 2)] == [
            (meta["kind"], meta["attempt"]) for _, _, meta in of(events, step_exception_event())
        ]
        assert [1, 2, 3] == [
            meta["attempt"]
            for _, _, meta in of(events, step_start_event())
            if meta["step"] is flows.Flaky
        ]
        records = await runner.history("flaky")
        failed = [
            (r.step, r.attempt, details(r)["failure"], details(r)["reason"])
            for r in records
            if r.kind == "step_failed"
        ]
        assert [
            ("flaky", 1, "exception", "ConnectionError: attempt 1 failed"),
            ("flaky", 2, "exception", "ConnectionError: attempt 2 failed"),
        ] == failed
        assert all(details(r)["retry_in"] > 0 for r in records if r.kind == "step_failed")
        assert [("flaky", 3, "done"), ("done", 1, "done")] == completed(records)
        # The retries ran inside the one drive job.
        assert ["succeeded"] == await db.settled("flaky")

    async def test_retries_spent(self, runner: DistributedRunner, db: Database) -> None:
        """Retries spent: the instance fails (workflow:exception); its timer is gone."""
        with capture_events(workflow_exception_event(), workflow_stop_event()) as events:
            iid = await runner.start(flows.DoomedFlow, {}, id="doomed")
            await parked(runner, iid, WaitForEvent)  # its timer waits, 60 s away
            await runner.resume(iid, "received")
            instance = await runner.wait(iid, timeout=GUARD)

        assert Status.FAILED == instance.status
        assert instance.error is not None
        assert (flows.Doomed, "exception") == (instance.error.step, instance.error.kind)
        assert "the printer is on fire" in str(instance.error.reason)
        assert 2 == flows.ATTEMPTS["doomed"]
        assert [(flows.Doomed, "exception")] == [
            (meta["failed_step"], meta["kind"]) for _, _, meta in events
        ]
        records = await runner.history(iid)
        assert [(1, True), (2, False)] == [
            (r.attempt, details(r)["retry_in"] is not None)
            for r in records
            if r.kind == "step_failed"
        ]
        [failed] = [r for r in records if r.kind == "failed"]
        assert ("doomed", "exception") == (failed.step, details(failed)["failure"])
        assert "the printer is on fire" in details(failed)["reason"]
        assert "failed" == records[-1].kind
        statuses = await db.settled(iid)
        assert "todo" not in statuses
        assert ("failed", None) == (await db.instance(iid))[::2]

    async def test_error_result(self, runner: DistributedRunner) -> None:
        """Error(reason) fails the instance at once, kind "error", without a retry."""
        with capture_events(step_exception_event()) as events:
            instance = await runner.run(flows.Refusal, {}, id="refused", timeout=GUARD)

        assert Status.FAILED == instance.status
        assert instance.error is not None
        assert ("error", {"code": 42}) == (instance.error.kind, instance.error.reason)
        assert 1 == flows.ATTEMPTS["refused"]
        assert [("error", {"code": 42}, None)] == [
            (meta["kind"], meta["reason"], meta["stacktrace"]) for _, _, meta in events
        ]
        assert [("refuses", 1, "error", None)] == [
            (r.step, r.attempt, details(r)["failure"], details(r)["retry_in"])
            for r in await runner.history("refused")
            if r.kind == "step_failed"
        ]

    async def test_undeclared_event(self, runner: DistributedRunner) -> None:
        """A step returning an event it does not declare fails the instance, naming the event."""
        instance = await runner.run(flows.Stray, {}, timeout=GUARD)

        assert Status.FAILED == instance.status
        assert instance.error is not None
        assert (flows.Strays, "invalid_result") == (instance.error.step, instance.error.kind)
        assert "elsewhere" in str(instance.error.reason)

    async def test_updates_json_cannot_hold(self, runner: DistributedRunner) -> None:
        """Updates a durable store cannot keep fail the instance, kind "invalid_result"."""
        instance = await runner.run(flows.Unstorable, {}, timeout=GUARD)

        assert Status.FAILED == instance.status
        assert instance.error is not None
        assert (flows.Hoards, "invalid_result") == (instance.error.step, instance.error.kind)
        assert "lock" in str(instance.error.reason)

    async def test_a_route_choosing_badly(self, runner: DistributedRunner) -> None:
        """A route choosing a step it does not name fails the instance with RouteError."""
        instance = await runner.run(flows.Misrouted, {}, timeout=GUARD)

        assert Status.FAILED == instance.status
        assert instance.error is not None
        assert (flows.Choose, "exception") == (instance.error.step, instance.error.kind)
        assert str(instance.error.reason).startswith("RouteError")

    async def test_step_timeout(self, runner: DistributedRunner) -> None:
        """A step running past its timeout is interrupted; the instance fails, kind "timeout"."""
        instance = await runner.run(flows.TooSlow, {}, timeout=GUARD)

        assert Status.FAILED == instance.status
        assert instance.error is not None
        assert (flows.Dawdles, "timeout") == (instance.error.step, instance.error.kind)


class TestCancel:
    async def test_cancel_stops_the_running_step(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """Cancel ends the instance and fences its driver off; the worker stops its running step."""
        probe = flows.probe("cancel")
        with capture_events(
            step_start_event(), step_stop_event(), step_exception_event()
        ) as events:
            iid = await runner.start(flows.Cancellable, {}, id="cancel")
            await until(probe.started)  # Long runs
            await parked(runner, iid, WaitForEvent)  # and a timer waits, 60 s away
            _, claimed, wake_at = await db.instance(iid)
            assert wake_at is not None

            cancelled = await runner.cancel(iid)

            assert Status.CANCELLED == cancelled.status
            assert ("cancelled", claimed + 1, None) == await db.instance(iid)
            await until(probe.cancelled)  # the worker stopped Long
            assert Status.CANCELLED == (await runner.wait(iid, timeout=GUARD)).status
            statuses = await db.settled(iid)
        assert ["succeeded"] == statuses
        assert 1 == probe.calls.count("long")
        # Like LocalRunner: step:start is closed by step:exception, kind "cancelled".
        assert [(step_start_event(), None), (step_exception_event(), "cancelled")] == [
            (name, meta.get("kind")) for name, _, meta in events if meta["step"] is flows.Long
        ]
        records = await runner.history(iid)
        # The driver wrote nothing after the cancel: its record is the last.
        assert "cancelled" == records[-1].kind
        assert ["long"] == details(records[-1])["stopped"]  # the steps running, not waiting
        assert not [r for r in records if r.step == "long"]
        assert [] == await db.inbox(iid)

        ended = await db.snapshot(iid)
        with pytest.raises(NotWaiting):
            await runner.resume(iid, "received")
        assert Status.CANCELLED == (await runner.cancel(iid)).status  # again: no change
        assert ended == await db.snapshot(iid)

    async def test_cancel_with_no_worker_running(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """Cancel needs no worker; a worker starting later runs none of the instance's steps."""
        probe = flows.probe("unattended")
        async with DistributedRunner(postgres_dsn, schema=schema) as runner:
            iid = await runner.start(flows.Parks, {}, id="unattended")
            cancelled = await runner.cancel(iid)

            assert Status.CANCELLED == cancelled.status
            assert Status.CANCELLED == (await runner.get(iid)).status
            assert ["started", "cancelled"] == [r.kind for r in await runner.history(iid)]

            async with worker(postgres_dsn, schema):
                statuses = await db.settled(iid)
            assert Status.CANCELLED == (await runner.get(iid)).status
            assert ["started", "cancelled"] == [r.kind for r in await runner.history(iid)]
        assert ["succeeded"] == statuses
        assert [] == probe.calls

    async def test_cancel_unknown(self, runner: DistributedRunner) -> None:
        """Cancelling an id nobody started raises InstanceNotFound."""
        with pytest.raises(InstanceNotFound):
            await runner.cancel("nobody")


class TestVersions:
    async def test_an_instance_keeps_its_version(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """An instance started on version 1 finishes on V1's steps while version 2 is current."""
        old = await runner.start(flows.Report, {}, id="report-old", version=1)
        new = await runner.start(flows.Report, {}, id="report-new")
        await parked(runner, old, flows.Hold)
        await parked(runner, new, flows.Hold)

        await runner.resume(old, "ok")
        await runner.resume(new, "ok")
        first = await runner.wait(old, timeout=GUARD)
        second = await runner.wait(new, timeout=GUARD)

        assert (flows.ReportV1, 1) == (first.workflow, first.workflow_version)
        assert [("Draft", "drafted"), ("Hold", "ok"), ("Done", "done")] == path(first)
        assert (flows.ReportV2, 2) == (second.workflow, second.workflow_version)
        assert [("Draft", "drafted"), ("Hold", "ok"), ("Review", "reviewed"), ("Done", "done")] == (
            path(second)
        )
        assert [
            ("report-new", "distributed.flows:ReportV2", 2),
            ("report-old", "distributed.flows:ReportV1", 1),
        ] == await db.rows("SELECT id, workflow, workflow_version FROM heph_instances ORDER BY id")


class TestStart:
    async def test_a_start_stores_the_instance_its_record_and_its_drive_job(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """start stores a pending instance, its `started` record and one drive job, at once."""
        async with DistributedRunner(postgres_dsn, schema=schema) as runner:
            iid = await runner.start(flows.Linear, {"n": 1}, id="stored")

            assert ("pending", 0, None) == await db.instance(iid)
            assert ["started"] == [r.kind for r in await runner.history(iid)]
            assert [("heph.drive", "todo", 0)] == await db.jobs(iid)
            assert [("heph:stored",)] == await db.rows("SELECT lock FROM procrastinate_jobs")

            async with worker(postgres_dsn, schema):
                instance = await runner.wait(iid, timeout=GUARD)
        assert Status.COMPLETED == instance.status

    async def test_a_duplicate_start_changes_nothing(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """Starting an id that an active instance has raises AlreadyRunning and changes nothing."""
        iid = await runner.start(flows.Parks, {"n": 1}, id="dup")
        await parked(runner, iid, flows.Hold)
        await db.settled(iid)
        before = await db.snapshot(iid)

        with (
            capture_events(workflow_start_event()) as starts,
            pytest.raises(AlreadyRunning, match="dup"),
        ):
            await runner.start(flows.Linear, {"n": 2}, id="dup")

        assert [] == starts
        assert before == await db.snapshot(iid)
        assert {"n": 1} == (await runner.get(iid)).context.initial

    async def test_a_finished_id_starts_again(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """An id whose instance ended can be started again: a new instance, its own records."""
        first = await runner.run(flows.Linear, {"n": 1}, id="again", timeout=GUARD)
        await db.settled("again")
        _, epoch, _ = await db.instance("again")
        second = await runner.run(flows.Linear, {"n": 5}, id="again", timeout=GUARD)

        assert (Status.COMPLETED, 20) == (first.status, first.context.steps["second"]["n"])
        assert (Status.COMPLETED, 60) == (second.status, second.context.steps["second"]["n"])
        assert 3 == len(second.execution_history)
        one_run = ["started", "step_completed", "step_completed", "step_completed", "completed"]
        assert one_run * 2 == [r.kind for r in await runner.history("again")]
        assert epoch < (await db.instance("again"))[1]
        assert ["succeeded", "succeeded"] == await db.settled("again")

    async def test_an_unserializable_context_stores_nothing(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """A context JSON cannot hold raises NotSerializable naming the key; nothing is stored."""
        with pytest.raises(NotSerializable, match="when"):
            await runner.start(flows.Linear, {"n": 1, "when": object()}, id="bad")

        assert [] == await db.rows("SELECT id FROM heph_instances")
        assert [] == await db.rows("SELECT seq FROM heph_history")
        assert [] == await db.rows("SELECT id FROM procrastinate_jobs")
        with pytest.raises(InstanceNotFound):
            await runner.get("bad")


class TestRefusedResumes:
    async def test_unknown_instance(self, runner: DistributedRunner, db: Database) -> None:
        """Resuming, messaging or timing an id nobody started raises InstanceNotFound; no write."""
        with pytest.raises(InstanceNotFound, match="nobody"):
            await runner.resume("nobody", "ok")
        with pytest.raises(InstanceNotFound, match="nobody"):
            await runner.send("nobody", "ok")
        with pytest.raises(InstanceNotFound, match="nobody"):
            await runner.schedule_resume("nobody", WaitForEvent, 1)

        assert [] == await db.rows("SELECT id FROM heph_inbox")
        assert [] == await db.rows("SELECT seq FROM heph_history")
        assert [] == await db.rows("SELECT id FROM procrastinate_jobs")

    async def test_not_waiting(self, runner: DistributedRunner, db: Database) -> None:
        """Resuming a running instance, or an ended one, raises NotWaiting and changes nothing."""
        probe = flows.probe("busy")
        iid = await runner.start(flows.Parks, {}, id="busy")
        await until(probe.started)  # Hold runs: nothing waits yet
        before = await db.snapshot(iid)

        with pytest.raises(NotWaiting):
            await runner.resume(iid, "ok")

        assert before == await db.snapshot(iid)
        probe.release.set()
        await parked(runner, iid, flows.Hold)
        await runner.resume(iid, "ok")
        await runner.wait(iid, timeout=GUARD)
        await db.settled(iid)
        ended = await db.snapshot(iid)
        with pytest.raises(NotWaiting):
            await runner.resume(iid, "ok")
        assert ended == await db.snapshot(iid)

    async def test_undeclared_event(self, runner: DistributedRunner, db: Database) -> None:
        """Resuming with an event the step does not declare raises UndeclaredEvent; no change."""
        iid = await runner.start(flows.Parks, {}, id="undeclared")
        await parked(runner, iid, flows.Hold)
        await db.settled(iid)
        before = await db.snapshot(iid)

        with pytest.raises(UndeclaredEvent, match="'nope'"):
            await runner.resume(iid, "nope")
        with pytest.raises(UndeclaredEvent, match="'timeout'"):
            await runner.schedule_resume(iid, flows.Hold, 1)

        assert before == await db.snapshot(iid)

    async def test_a_step_that_is_not_waiting(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """Naming a step that does not wait raises NotWaiting; no change."""
        iid = await runner.start(flows.Timed, {}, id="other-step")
        await parked(runner, iid, WaitForEvent)
        await db.settled(iid)
        before = await db.snapshot(iid)

        with pytest.raises(NotWaiting, match="Got"):
            await runner.resume(iid, "done", step=flows.Got)
        with pytest.raises(NotWaiting, match="no_such_step"):
            await runner.resume(iid, "done", step="no_such_step")
        with pytest.raises(NotWaiting, match="Got"):
            await runner.schedule_resume(iid, flows.Got, 1)

        assert before == await db.snapshot(iid)

    async def test_ambiguous(self, runner: DistributedRunner, db: Database) -> None:
        """With two steps waiting, a resume must name one: AmbiguousResume, no change."""
        iid = await runner.start(flows.Twins, {}, id="twins")
        await parked(runner, iid, flows.Hold)
        await parked(runner, iid, flows.HoldToo)
        await db.settled(iid)
        before = await db.snapshot(iid)

        with pytest.raises(AmbiguousResume, match="step="):
            await runner.resume(iid, "ok")

        assert before == await db.snapshot(iid)
        await runner.resume(iid, "ok", step=flows.HoldToo)
        await runner.resume(iid, "ok", step="hold")
        instance = await runner.wait(iid, timeout=GUARD)
        assert Status.COMPLETED == instance.status
        assert 1 == sum(1 for entry in instance.execution_history if entry.step is flows.Merge)
        assert [("hold_too", "ok", "external"), ("hold", "ok", "external")] == resumes(
            await runner.history(iid)
        )


class TestQueries:
    async def test_get_and_list(self, runner: DistributedRunner) -> None:
        """get returns the stored instance; list filters by status and workflow."""
        done = await runner.run(flows.Linear, {"n": 1}, id="done", timeout=GUARD)
        iid = await runner.start(flows.Parks, {}, id="parked")
        await parked(runner, iid, flows.Hold)

        assert done.execution_history == (await runner.get("done")).execution_history
        with pytest.raises(InstanceNotFound):
            await runner.get("missing")
        assert ["done", "parked"] == [i.id for i in await runner.list()]
        assert ["done"] == [i.id for i in await runner.list(status=Status.COMPLETED)]
        assert ["parked"] == [i.id for i in await runner.list(status="waiting")]
        assert ["parked"] == [i.id for i in await runner.list(workflow=flows.Parks)]
        assert ["done", "parked"] == [
            i.id for i in await runner.list(status_in=[Status.COMPLETED, Status.WAITING])
        ]
        assert [] == await runner.list(status=Status.FAILED)

    async def test_history_pages(self, runner: DistributedRunner) -> None:
        """history pages through the records with offset and limit; an unknown id raises."""
        await runner.run(flows.Linear, {"n": 1}, id="paged", timeout=GUARD)
        records = await runner.history("paged")

        assert records[1:3] == await runner.history("paged", offset=1, limit=2)
        assert records[4:] == await runner.history("paged", offset=4)
        assert all(isinstance(record, Record) for record in records)
        assert [r.at for r in records] == sorted(r.at for r in records)
        with pytest.raises(InstanceNotFound):
            await runner.history("missing")


class TestMisuse:
    async def test_a_runner_not_entered(self, postgres_dsn: str, schema: str) -> None:
        """A runner used outside `async with` raises RunnerStopped."""
        runner = DistributedRunner(postgres_dsn, schema=schema)

        with pytest.raises(RunnerStopped, match="async with"):
            await runner.start(flows.Linear, {"n": 1})

    async def test_wait_for_an_unknown_id(self, runner: DistributedRunner) -> None:
        """Waiting for an id nobody started raises InstanceNotFound."""
        with pytest.raises(InstanceNotFound):
            await runner.wait("nobody", timeout=GUARD)

    @pytest.mark.parametrize("delay", [-1, float("nan"), True, "1"])
    async def test_schedule_resume_with_a_bad_delay(
        self, runner: DistributedRunner, db: Database, delay: Any
    ) -> None:
        """schedule_resume refuses a delay that is not a finite number >= 0; nothing changes."""
        iid = await runner.start(flows.Timed, {}, id="bad-delay")
        await parked(runner, iid, WaitForEvent)
        await db.settled(iid)
        before = await db.snapshot(iid)

        with pytest.raises(ValueError, match="delay"):
            await runner.schedule_resume(iid, WaitForEvent, delay)

        assert before == await db.snapshot(iid)

    @pytest.mark.parametrize("schema_name", ["Upper", "with-dash", "1digit", ""])
    def test_a_schema_name_search_path_cannot_take(
        self, postgres_dsn: str, schema_name: str
    ) -> None:
        """Schema names must be usable unquoted in search_path: others raise ValueError."""
        with pytest.raises(ValueError, match="schema"):
            DistributedRunner(postgres_dsn, schema=schema_name)
        with pytest.raises(ValueError, match="schema"):
            Worker(postgres_dsn, schema=schema_name)


class TestTelemetry:
    async def test_the_eleven_events(self, postgres_dsn: str, schema: str) -> None:
        """Every event is emitted, by the runner or the worker, with the fields they promise."""
        with capture_events() as events:
            async with (
                worker(postgres_dsn, schema, name="w1"),
                DistributedRunner(postgres_dsn, schema=schema, name="r1") as runner,
            ):
                iid = await runner.start(flows.Parks, {"n": 1}, id="told")
                await parked(runner, iid, flows.Hold)
                await runner.resume(iid, "ok")
                await runner.wait(iid, timeout=GUARD)
                await runner.run(flows.Refusal, {}, id="refusal", timeout=GUARD)

        assert set(telemetry.events()) == {name for name, _, _ in events}
        # The worker's events come from its driver, a LocalRunner (`runner` is its class).
        assert {("w1", Driver), ("r1", DistributedRunner)} == {
            (meta["name"], meta["runner"]) for _, _, meta in of(events, runner_init_event())
        }
        assert [
            ("told", flows.Begin, DistributedRunner),
            ("refusal", flows.Refuses, DistributedRunner),
        ] == [
            (meta["instance_id"], meta["initial_step"], meta["runner"])
            for _, _, meta in of(events, workflow_start_event())
        ]
        step_events = (
            step_start_event(),
            step_stop_event(),
            step_async_event(),
            step_exception_event(),
            step_resume_event(),
        )
        for name, _, meta in events:
            if name in step_events:
                assert meta["step"].step_key == meta["step_key"], (name, meta["step"])

        starts = [meta["step"] for _, _, meta in of(events, step_start_event(), "told")]
        assert [flows.Begin, flows.Hold, flows.After, Done] == starts
        # One driver at a time per instance: its events come in the LocalRunner's order.
        assert [
            (flows.Begin, "begun", [flows.Hold]),
            (flows.Hold, "ok", [flows.After]),
            (flows.After, "done", [Done]),
            (Done, "done", []),
        ] == [
            (meta["from_step"], meta["event"], meta["targets"])
            for _, _, meta in of(events, workflow_transition_event(), "told")
        ]
        assert [flows.Hold] == [meta["step"] for _, _, meta in of(events, step_async_event())]
        [(_, resume_measurements, resume)] = of(events, step_resume_event())
        assert ("ok", "external") == (resume["resume_event"], resume["source"])
        assert resume_measurements["wait_duration"] >= 0

        # `iteration` counts the advances of each drive of the instance from 1 (a drive
        # takes the instance over, as a restarted LocalRunner does); `advance_count`
        # counts those of the drive that ended it.
        iterations = [
            meta["iteration"] for _, _, meta in of(events, engine_advance_event(), "told")
        ]
        assert 1 == iterations[0]
        assert all(b in (1, a + 1) for a, b in itertools.pairwise(iterations)), iterations
        [(_, stop_measurements, stop)] = of(events, workflow_stop_event())
        assert "told" == stop["instance_id"]
        assert 4 == stop_measurements["step_count"]
        assert iterations[-1] == stop_measurements["advance_count"]

        [(_, _, failure)] = of(events, step_exception_event())
        assert ("refusal", flows.Refuses, "error") == (
            failure["instance_id"],
            failure["step"],
            failure["kind"],
        )
        [(_, _, failed)] = of(events, workflow_exception_event())
        assert ("refusal", flows.Refuses, "error") == (
            failed["instance_id"],
            failed["failed_step"],
            failed["kind"],
        )


class TestIsolation:
    async def test_a_cancel_in_another_schema_stops_nothing_here(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """Cancelling an instance in one schema leaves alone the instance with its id in another."""
        other = fresh_schema()
        here_probe = flows.probe("here")
        there_probe = flows.probe("there")
        try:
            async with (
                worker(postgres_dsn, schema),
                DistributedRunner(postgres_dsn, schema=schema) as here,
                worker(postgres_dsn, other),
                DistributedRunner(postgres_dsn, schema=other) as there,
            ):
                # The same instance id in both schemas: the cancel's notification names it.
                await here.start(flows.Cancellable, {"probe": "here"}, id="same")
                await until(here_probe.started)
                await parked(here, "same", WaitForEvent)
                await there.start(flows.Cancellable, {"probe": "there"}, id="same")
                await until(there_probe.started)
                await parked(there, "same", WaitForEvent)
                _, epoch, _ = await db.instance("same")

                await there.cancel("same")
                await until(there_probe.cancelled)
                # A letter here sent after the cancel there: once the worker here has
                # applied it, it has seen any notification the cancel could have sent it.
                await here.resume("same", "received", step=WaitForEvent)

                async def resumed_here() -> bool:
                    return bool(resumes(await here.history("same")))

                await eventually(resumed_here, "the resume here to be applied")

                assert not here_probe.cancelled.is_set(), "Long was stopped here"
                assert ("running", epoch) == (await db.instance("same"))[:2]
                here_probe.release.set()
                assert Status.COMPLETED == (await here.wait("same", timeout=GUARD)).status
                assert "cancelled" not in [r.kind for r in await here.history("same")]
                assert Status.CANCELLED == (await there.get("same")).status
        finally:
            drop_schema(postgres_dsn, other)


class TestShutdown:
    async def test_a_worker_stops_after_its_running_steps(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """Leaving a worker waits for its running step, whose park is stored."""
        probe = flows.probe("graceful")
        async with DistributedRunner(postgres_dsn, schema=schema) as runner:
            async with worker(postgres_dsn, schema):
                await runner.start(flows.Parks, {}, id="graceful")
                await until(probe.started)  # Hold runs
                probe.release.set()  # Hold goes on (and has its park to store) as we leave
            # The worker has stopped, after Hold's park was stored and its drive job ended.
            assert flows.Hold in (await runner.get("graceful")).waiting_steps
            assert ["succeeded"] == await db.statuses("graceful")
            records = await runner.history("graceful")
        assert ["hold"] == [r.step for r in records if r.kind == "step_parked"]
        assert 1 == probe.calls.count("hold")

    async def test_a_step_cut_short_by_a_stopping_worker_runs_again(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """A drive cut short because its worker stopped is driven again by another worker."""
        probe = flows.probe("cut")
        async with DistributedRunner(postgres_dsn, schema=schema) as runner:
            async with worker(postgres_dsn, schema, shutdown_timeout=0.1):
                await runner.start(flows.Parks, {}, id="cut")
                await until(probe.started)  # Hold runs, blocked until released
            assert ["todo"] == await db.statuses("cut"), "nothing will run Hold again"
            assert Status.RUNNING == (await runner.get("cut")).status

            probe.release.set()
            async with worker(postgres_dsn, schema, name="second"):
                await parked(runner, "cut", flows.Hold)
                await runner.resume("cut", "ok")
                assert Status.COMPLETED == (await runner.wait("cut", timeout=GUARD)).status
            records = await runner.history("cut")
        assert 2 == probe.calls.count("hold")
        assert [("second", "running")] == [
            (details(r)["runner"], details(r)["status"]) for r in records if r.kind == "recovered"
        ]
        assert [("hold", "ok", "external")] == resumes(records)
