"""DistributedRunner with an in-process Worker, against a real PostgreSQL.

Each test has a schema of its own. The runner writes instances and resumes;
the worker (same process, same event loop) runs the jobs. Tests look at the
runner's answers, at the rows of ``heph_step_results`` and at procrastinate's
jobs.
"""

# Tests state the expected value first: assert expected == actual.

from __future__ import annotations

from typing import Any

import pytest

from hephaestus import (
    AlreadyRunning,
    AmbiguousResume,
    Done,
    InstanceNotFound,
    NotSerializable,
    NotWaiting,
    RunnerStopped,
    Status,
    UndeclaredEvent,
    Wait,
    WaitForEvent,
    telemetry,
)
from hephaestus.distributed import DistributedRunner, Worker
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


async def outcomes_per_activation(db: Database, instance_id: str) -> dict[tuple[str, int], int]:
    """How many ``outcome`` rows each (step, activation) of the instance has."""
    rows = await db.rows(
        "SELECT step, activation, count(*) FROM heph_step_results"
        " WHERE instance_id = %s AND slot = 'outcome' GROUP BY step, activation",
        instance_id,
    )
    return {(step.rsplit(":", 1)[-1], activation): count for step, activation, count in rows}


async def settled_jobs(db: Database, instance_id: str) -> dict[str, list[str]]:
    """The instance's job statuses by task, once none is ``todo`` or ``doing`` (polled)."""

    async def check() -> dict[str, list[str]] | None:
        statuses = await db.statuses(instance_id)
        busy = any(s in ("todo", "doing") for found in statuses.values() for s in found)
        return None if busy else statuses

    return await eventually(check, f"the jobs of {instance_id} to settle")


async def fire_timers(db: Database, instance_id: str) -> None:
    """Make the instance's pending timer jobs due now, as if their time had come."""
    await db.rows(
        "UPDATE procrastinate_jobs SET scheduled_at = now() WHERE task_name = 'heph.resume_timeout'"
        " AND status = 'todo' AND args->>'instance_id' = %s",
        instance_id,
    )


async def timer_ran(db: Database, instance_id: str) -> None:
    """Wait until a timer job of the instance has run to its end."""

    async def check() -> bool:
        return "succeeded" in (await db.statuses(instance_id)).get("resume_timeout", [])

    await eventually(check, f"a timer of {instance_id} to run")


async def snapshot(db: Database, instance_id: str) -> tuple[Any, ...]:
    """Everything stored about the instance: its row, its results and its jobs."""
    row = await db.rows(
        "SELECT status, state, advance_count, updated_at FROM heph_instances WHERE id = %s",
        instance_id,
    )
    return row, await db.results(instance_id), await db.jobs(instance_id)


class TestRunning:
    async def test_linear(self, runner: DistributedRunner, db: Database) -> None:
        """A linear workflow completes with each step's updates and metadata, each applied once."""
        instance = await runner.run(flows.Linear, {"n": 1}, id="linear", timeout=GUARD)

        assert Status.COMPLETED == instance.status
        assert [("First", "done"), ("Second", "done"), ("Done", "done")] == path(instance)
        assert {"n": 2} == instance.context.steps["first"]
        assert {"n": 20} == instance.context.steps["second"]
        assert {"first_ran": True} == instance.runtime_metadata
        assert [
            ("First", "completed", "done", None, True),
            ("Second", "completed", "done", None, True),
            ("Done", "completed", "done", None, True),
        ] == await db.results("linear")

    async def test_fan_out_and_join(self, runner: DistributedRunner, db: Database) -> None:
        """Three parallel steps each record one outcome; the join runs once, after all three."""
        probe = flows.probe("fan")
        instance = await runner.run(flows.FanOut, {}, id="fan", timeout=GUARD)

        assert Status.COMPLETED == instance.status
        steps = ("Prepare", "Left", "Middle", "Right", "Merge", "Done")
        assert {(step, 1): 1 for step in steps} == await outcomes_per_activation(db, "fan")
        assert 1 == probe.calls.count("merge")
        assert ["prepare"] == probe.calls[:1]
        assert {"left", "middle", "right"} == set(probe.calls[1:4])
        assert ["left", "middle", "prepare", "right"] == instance.context.steps["merge"]["saw"]
        assert ("Merge", "merged") == path(instance)[-2]
        statuses = await settled_jobs(db, "fan")
        assert ["succeeded"] * 6 == statuses["execute_step"]

    @pytest.mark.parametrize(("express", "chosen"), [(True, "Express"), (False, "Standard")])
    async def test_a_route_chooses(
        self, runner: DistributedRunner, db: Database, express: bool, chosen: str
    ) -> None:
        """A Route runs the step its chooser picks; the other never gets a job."""
        instance = await runner.run(flows.Routed, {"express": express}, id="route", timeout=GUARD)

        assert Status.COMPLETED == instance.status
        assert [("Choose", "chosen"), (chosen, "shipped"), ("Done", "done")] == path(instance)
        steps = [
            args["step"].rsplit(":", 1)[-1]
            for name, _, _, args in await db.jobs("route")
            if name == "heph.execute_step"
        ]
        assert ["Choose", chosen, "Done"] == steps

    async def test_step_config(self, runner: DistributedRunner) -> None:
        """Steps get the config their transition gives them (the start step's too)."""
        instance = await runner.run(flows.Configured, {"name": "Ada"}, timeout=GUARD)

        assert Status.COMPLETED == instance.status
        assert {"said": "hello, Ada"} == instance.context.steps["greet"]
        assert {"said": ["hello, Ada", "hello, Ada"]} == instance.context.steps["repeat"]

    async def test_a_wait_times_out_by_itself(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """A Wait's timer job resumes it with "timeout" once its time has come."""
        with capture_events(step_resume_event()) as resumes:
            instance = await runner.run(flows.Sleeps, {}, id="sleeps", timeout=GUARD)

        assert [("Begin", "begun"), ("Wait", "timeout"), ("After", "done"), ("Done", "done")] == (
            path(instance)
        )
        assert [(Wait, "timeout", "timeout")] == [
            (meta["step"], meta["resume_event"], meta["source"]) for _, _, meta in resumes
        ]
        assert [
            ("Wait", "async", None, None, True),
            ("Wait", "resumed", "timeout", "timeout", True),
        ] == [row for row in await db.results("sleeps") if row[0] == "Wait"]


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
            ("Hold", "async", None, None, True),
            ("Hold", "resumed", "ok", "external", True),
        ] == [row for row in await db.results(iid) if row[0] == "Hold"]

    async def test_data_with_a_resume_lands_in_the_context(self, runner: DistributedRunner) -> None:
        """The resumed step's output is the data sent with the resume."""
        iid = await runner.start(flows.Parks, {}, id="parks-data")
        await parked(runner, iid, flows.Hold)
        await runner.resume(iid, "ok", {"by": "ada"})
        instance = await runner.wait(iid, timeout=GUARD)
        assert {"by": "ada"} == instance.context.steps["hold"]

    async def test_unstorable_data_is_refused(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """Data JSON cannot hold is refused before anything is written."""
        iid = await runner.start(flows.Parks, {}, id="parks-bad")
        await parked(runner, iid, flows.Hold)
        with pytest.raises(NotSerializable, match="when"):
            await runner.resume(iid, "ok", {"when": object()})
        assert [] == [row for row in await db.results(iid) if row[1] == "resumed"]
        await runner.cancel(iid)

    async def test_messages_are_not_taken_yet(self, runner: DistributedRunner) -> None:
        """send() is refused on the distributed runner, for now."""
        with pytest.raises(NotImplementedError, match="does not take messages yet"):
            await runner.send("anything", "ok")

    async def test_a_resume_before_the_park_is_applied(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """A resume that arrives while the step's `async` row waits to be applied is not lost."""
        probe = flows.probe("early")
        iid = await runner.start(flows.Parks, {}, id="early")
        await until(probe.started)  # Hold runs; the instance is not waiting yet
        async with db.row_locked(iid):  # no advance can apply anything now
            probe.release.set()

            async def park_recorded() -> bool:
                return ("Hold", "async", None, None, False) in await db.results(iid)

            await eventually(park_recorded, "Hold's async row")
            assert Status.RUNNING == (await runner.get(iid)).status

            await runner.resume(iid, "ok")

            assert [
                ("Hold", "async", None, None, False),
                ("Hold", "resumed", "ok", "external", False),
            ] == [row for row in await db.results(iid) if row[0] == "Hold"]
        instance = await runner.wait(iid, timeout=GUARD)

        assert Status.COMPLETED == instance.status
        assert [("Begin", "begun"), ("Hold", "ok"), ("After", "done"), ("Done", "done")] == (
            path(instance)
        )
        assert all(processed for *_, processed in await db.results(iid))

    async def test_resume_first_then_the_timer_does_nothing(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """A timer that fires after a resume finds the resume slot taken and changes nothing."""
        iid = await runner.start(flows.Timed, {}, id="resume-first")
        await parked(runner, iid, WaitForEvent)
        async with db.row_locked(iid):  # the resume is recorded, not applied
            await runner.resume(iid, "received")
            advances = len((await db.statuses(iid))["advance"])
            await fire_timers(db, iid)
            await timer_ran(db, iid)

            assert advances == len((await db.statuses(iid))["advance"]), "it deferred no advance"
            assert [("WaitForEvent", "resumed", "received", "external", False)] == [
                row for row in await db.results(iid) if row[1] == "resumed"
            ]
        instance = await runner.wait(iid, timeout=GUARD)

        assert [
            ("Begin", "begun"),
            ("WaitForEvent", "received"),
            ("Got", "done"),
            ("Done", "done"),
        ] == (path(instance))
        assert ["succeeded"] == (await settled_jobs(db, iid))["resume_timeout"]

    async def test_timer_first_then_a_resume_is_refused(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """Once the timer has resumed the step, an external resume raises NotWaiting."""
        iid = await runner.start(flows.Timed, {}, id="timer-first")
        await parked(runner, iid, WaitForEvent)
        async with db.row_locked(iid):  # the timer's resume is recorded, not applied
            await fire_timers(db, iid)
            await timer_ran(db, iid)

            with pytest.raises(NotWaiting, match="resumed already"):
                await runner.resume(iid, "received")
            assert [("WaitForEvent", "resumed", "timeout", "timeout", False)] == [
                row for row in await db.results(iid) if row[1] == "resumed"
            ]
        instance = await runner.wait(iid, timeout=GUARD)

        assert [
            ("Begin", "begun"),
            ("WaitForEvent", "timeout"),
            ("TimedOut", "done"),
            ("Done", "done"),
        ] == (path(instance))
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
        # The scheduled timer fired; the configured one (60 s) was cancelled at the end.
        assert ["cancelled", "succeeded"] == sorted((await settled_jobs(db, iid))["resume_timeout"])


class TestFailures:
    async def test_retry_then_success(self, runner: DistributedRunner, db: Database) -> None:
        """A step that raises is retried (Retry.max_attempts counts every run) until it succeeds."""
        with capture_events(step_exception_event(), step_stop_event()) as events:
            instance = await runner.run(flows.Retries, {"failures": 2}, id="flaky", timeout=GUARD)

        assert Status.COMPLETED == instance.status
        assert 3 == flows.ATTEMPTS["flaky"]
        assert {"attempts": 3} == instance.context.steps["flaky"]
        assert [("exception", 1), ("exception", 2)] == [
            (meta["kind"], meta["attempt"]) for _, _, meta in of(events, step_exception_event())
        ]
        assert [3] == [
            meta["attempt"]
            for _, _, meta in of(events, step_stop_event())
            if meta["step"] is flows.Flaky
        ]
        jobs = await db.jobs("flaky")
        # One job, run three times (procrastinate counts every finished run in `attempts`).
        assert [("succeeded", 3)] == [
            (status, attempts)
            for name, status, attempts, args in jobs
            if args.get("step", "").endswith(":Flaky")
        ]

    async def test_retries_spent(self, runner: DistributedRunner, db: Database) -> None:
        """Retries spent: the instance fails (workflow:exception), its todo jobs are cancelled."""
        with capture_events(workflow_exception_event(), workflow_stop_event()) as events:
            iid = await runner.start(flows.DoomedFlow, {}, id="doomed")
            await parked(runner, iid, WaitForEvent)  # its timer job waits, 60 s away
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
        statuses = await settled_jobs(db, iid)
        assert ["cancelled"] == statuses["resume_timeout"]
        # Doomed's job failed for good (or, had the advance's abort of the instance's
        # running jobs caught it between recording its failure and ending: aborted).
        assert statuses["execute_step"][-1] in ("failed", "aborted")
        assert [("Doomed", "failed", None, None, True)] == [
            row for row in await db.results(iid) if row[0] == "Doomed"
        ]

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
    async def test_cancel_aborts_the_running_step(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """Cancel ends the instance, aborts its running step, cancels its todo jobs."""
        probe = flows.probe("cancel")
        with capture_events(
            step_start_event(), step_stop_event(), step_exception_event()
        ) as events:
            iid = await runner.start(flows.Cancellable, {}, id="cancel")
            await until(probe.started)  # Long runs
            await parked(runner, iid, WaitForEvent)  # and a timer job waits, 60 s away

            cancelled = await runner.cancel(iid)

            assert Status.CANCELLED == cancelled.status
            await until(probe.cancelled)  # the worker aborted Long
            assert Status.CANCELLED == (await runner.wait(iid, timeout=GUARD)).status
            statuses = await settled_jobs(db, iid)
        assert ["cancelled"] == statuses["resume_timeout"]
        long_jobs = [
            status
            for name, status, _, args in await db.jobs(iid)
            if args.get("step", "").endswith(":Long")
        ]
        [long_job] = long_jobs  # ended, never to run again (aborted, or failed: not retried)
        assert long_job in ("aborted", "failed")
        assert 1 == probe.calls.count("long")
        # Like LocalRunner: step:start is closed by step:exception, kind "cancelled".
        assert [(step_start_event(), None), (step_exception_event(), "cancelled")] == [
            (name, meta.get("kind")) for name, _, meta in events if meta["step"] is flows.Long
        ]
        with pytest.raises(NotWaiting):
            await runner.resume(iid, "received")
        assert Status.CANCELLED == (await runner.cancel(iid)).status  # again: no change

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
    async def test_a_duplicate_start_changes_nothing(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """Starting an id that an active instance has raises AlreadyRunning and changes nothing."""
        iid = await runner.start(flows.Parks, {"n": 1}, id="dup")
        await parked(runner, iid, flows.Hold)
        before = await snapshot(db, iid)

        with (
            capture_events(workflow_start_event()) as starts,
            pytest.raises(AlreadyRunning, match="dup"),
        ):
            await runner.start(flows.Linear, {"n": 2}, id="dup")

        assert [] == starts
        assert before == await snapshot(db, iid)
        assert {"n": 1} == (await runner.get(iid)).context.initial

    async def test_a_finished_id_starts_again(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """An id whose instance ended can be started again: a new instance, results of its own."""
        first = await runner.run(flows.Linear, {"n": 1}, id="again", timeout=GUARD)
        second = await runner.run(flows.Linear, {"n": 5}, id="again", timeout=GUARD)

        assert (Status.COMPLETED, 20) == (first.status, first.context.steps["second"]["n"])
        assert (Status.COMPLETED, 60) == (second.status, second.context.steps["second"]["n"])
        assert ["First", "Second", "Done"] == [row[0] for row in await db.results("again")]
        assert 3 == len(second.execution_history)

    async def test_an_unserializable_context_stores_nothing(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """A context JSON cannot hold raises NotSerializable naming the key; nothing is stored."""
        with pytest.raises(NotSerializable, match="when"):
            await runner.start(flows.Linear, {"n": 1, "when": object()}, id="bad")

        assert [] == await db.rows("SELECT id FROM heph_instances")
        assert [] == await db.rows("SELECT id FROM procrastinate_jobs")
        with pytest.raises(InstanceNotFound):
            await runner.get("bad")

    async def test_a_workflow_with_a_map_is_refused(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """Maps run on the LocalRunner only, for now: refused before anything is stored."""
        with pytest.raises(NotImplementedError, match="Mapped maps Second"):
            await runner.start(flows.Mapped, {"n": 1}, id="mapped")
        assert [] == await db.rows("SELECT id FROM heph_instances")


class TestRefusedResumes:
    async def test_unknown_instance(self, runner: DistributedRunner, db: Database) -> None:
        """Resuming an id nobody started raises InstanceNotFound and writes nothing."""
        with pytest.raises(InstanceNotFound, match="nobody"):
            await runner.resume("nobody", "ok")

        assert [] == await db.rows("SELECT id FROM heph_step_results")
        assert [] == await db.rows("SELECT id FROM procrastinate_jobs")

    async def test_not_waiting(self, runner: DistributedRunner, db: Database) -> None:
        """Resuming a running instance, or an ended one, raises NotWaiting and changes nothing."""
        probe = flows.probe("busy")
        iid = await runner.start(flows.Parks, {}, id="busy")
        await until(probe.started)  # Hold runs: nothing waits yet
        before = await snapshot(db, iid)

        with pytest.raises(NotWaiting):
            await runner.resume(iid, "ok")

        assert before == await snapshot(db, iid)
        probe.release.set()
        await parked(runner, iid, flows.Hold)
        await runner.resume(iid, "ok")
        await runner.wait(iid, timeout=GUARD)
        ended = await snapshot(db, iid)
        with pytest.raises(NotWaiting):
            await runner.resume(iid, "ok")
        assert ended == await snapshot(db, iid)

    async def test_undeclared_event(self, runner: DistributedRunner, db: Database) -> None:
        """Resuming with an event the step does not declare raises UndeclaredEvent; no change."""
        iid = await runner.start(flows.Parks, {}, id="undeclared")
        await parked(runner, iid, flows.Hold)
        before = await snapshot(db, iid)

        with pytest.raises(UndeclaredEvent, match="'nope'"):
            await runner.resume(iid, "nope")
        with pytest.raises(UndeclaredEvent, match="'timeout'"):
            await runner.schedule_resume(iid, flows.Hold, 1)

        assert before == await snapshot(db, iid)

    async def test_a_step_that_is_not_waiting(
        self, runner: DistributedRunner, db: Database
    ) -> None:
        """Naming a step that does not wait raises NotWaiting; no change."""
        iid = await runner.start(flows.Timed, {}, id="other-step")
        await parked(runner, iid, WaitForEvent)
        before = await snapshot(db, iid)

        with pytest.raises(NotWaiting, match="Got"):
            await runner.resume(iid, "done", step=flows.Got)
        with pytest.raises(NotWaiting, match="no_such_step"):
            await runner.resume(iid, "done", step="no_such_step")

        assert before == await snapshot(db, iid)

    async def test_ambiguous(self, runner: DistributedRunner, db: Database) -> None:
        """With two steps waiting, a resume must name one: AmbiguousResume, no change."""
        iid = await runner.start(flows.Twins, {}, id="twins")
        await parked(runner, iid, flows.Hold)
        await parked(runner, iid, flows.HoldToo)
        before = await snapshot(db, iid)

        with pytest.raises(AmbiguousResume, match="step="):
            await runner.resume(iid, "ok")

        assert before == await snapshot(db, iid)
        await runner.resume(iid, "ok", step=flows.HoldToo)
        await runner.resume(iid, "ok", step="hold")
        instance = await runner.wait(iid, timeout=GUARD)
        assert Status.COMPLETED == instance.status
        assert 1 == sum(1 for entry in instance.execution_history if entry.step is flows.Merge)


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
        before = await snapshot(db, iid)

        with pytest.raises(ValueError, match="delay"):
            await runner.schedule_resume(iid, WaitForEvent, delay)

        assert before == await snapshot(db, iid)

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
    async def test_the_eleven_events(self, postgres_dsn: str, schema: str, db: Database) -> None:
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
        assert {("w1", Worker), ("r1", DistributedRunner)} == {
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
        # Transitions and advances are emitted after their commits, by whichever job
        # committed (a step job applies its own result when it can): their order
        # across jobs is not promised, their content is.
        transitions = of(events, workflow_transition_event(), "told")
        assert [
            (flows.Begin, "begun", [flows.Hold]),
            (flows.Hold, "ok", [flows.After]),
            (flows.After, "done", [Done]),
            (Done, "done", []),
        ] == sorted(
            ((meta["from_step"], meta["event"], meta["targets"]) for _, _, meta in transitions),
            key=lambda transition: starts.index(transition[0]),
        )
        assert [flows.Hold] == [meta["step"] for _, _, meta in of(events, step_async_event())]
        [(_, resume_measurements, resume)] = of(events, step_resume_event())
        assert ("ok", "external") == (resume["resume_event"], resume["source"])
        assert resume_measurements["wait_duration"] >= 0

        advances = of(events, engine_advance_event(), "told")
        assert list(range(1, len(advances) + 1)) == sorted(
            meta["iteration"] for _, _, meta in advances
        )
        [(_, stop_measurements, stop)] = of(events, workflow_stop_event())
        assert "told" == stop["instance_id"]
        assert 4 == stop_measurements["step_count"]
        assert len(advances) == stop_measurements["advance_count"]
        assert await db.advance_count("told") == stop_measurements["advance_count"]

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
    async def test_a_cancel_in_another_schema_aborts_nothing_here(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """Cancelling an instance in one schema leaves the running steps of another alone."""
        other = fresh_schema()
        here_probe = flows.probe("here")
        there_probe = flows.probe("there")
        try:
            # Here, the worker learns about new jobs only from notifications (it polls
            # once a minute), so it handles them in the order they were sent.
            async with (
                worker(postgres_dsn, schema, poll_interval=60),
                DistributedRunner(postgres_dsn, schema=schema) as here,
                worker(postgres_dsn, other),
                DistributedRunner(postgres_dsn, schema=other) as there,
            ):
                await here.start(flows.Cancellable, {}, id="here")
                await until(here_probe.started)
                await parked(here, "here", WaitForEvent)
                await there.start(flows.Cancellable, {}, id="there")
                await until(there_probe.started)
                await parked(there, "there", WaitForEvent)
                long_jobs = [
                    job_id
                    for database in (db, Database(postgres_dsn, other))
                    for (job_id,) in await database.rows(
                        "SELECT id FROM procrastinate_jobs WHERE args->>'step' LIKE '%%:Long'"
                    )
                ]
                assert long_jobs[0] == long_jobs[1], "the two Long steps have the same job id"

                await there.cancel("there")  # asks for an abort of job <id> in `other`
                await until(there_probe.cancelled)
                # A notification sent after the abort request: once the instance it
                # starts has run, the worker here has handled the abort request too.
                await here.run(flows.Linear, {"n": 1}, id="marker", timeout=GUARD)

                assert not here_probe.cancelled.is_set(), "Long was aborted here"
                here_probe.release.set()
                await here.resume("here", "received", step=WaitForEvent)
                assert Status.COMPLETED == (await here.wait("here", timeout=GUARD)).status
        finally:
            drop_schema(postgres_dsn, other)


class TestShutdown:
    async def test_a_worker_stops_after_its_running_steps(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """Leaving a worker waits for its running step, whose result is applied."""
        probe = flows.probe("graceful")
        async with DistributedRunner(postgres_dsn, schema=schema) as runner:
            async with worker(postgres_dsn, schema):
                await runner.start(flows.Parks, {}, id="graceful")
                await until(probe.started)  # Hold runs
                probe.release.set()  # Hold goes on (and has its result to record) as we leave
            # The worker has stopped, after Hold's park was recorded and applied.
            assert flows.Hold in (await runner.get("graceful")).waiting_steps

    async def test_a_step_cut_short_by_a_stopping_worker_runs_again(
        self, postgres_dsn: str, schema: str, db: Database
    ) -> None:
        """A step aborted because its worker stopped runs again on another worker."""
        probe = flows.probe("cut")
        async with DistributedRunner(postgres_dsn, schema=schema) as runner:
            async with worker(postgres_dsn, schema, shutdown_timeout=0.1):
                await runner.start(flows.Parks, {}, id="cut")
                await until(probe.started)  # Hold runs, blocked until released
            hold_jobs = [
                status
                for name, status, _, args in await db.jobs("cut")
                if args.get("step", "").endswith(":Hold")
            ]
            assert "todo" in hold_jobs, f"nothing will run Hold again: {hold_jobs}"

            probe.release.set()
            async with worker(postgres_dsn, schema):
                await parked(runner, "cut", flows.Hold)
                await runner.resume("cut", "ok")
                assert Status.COMPLETED == (await runner.wait("cut", timeout=GUARD)).status
        assert 2 == probe.calls.count("hold")
