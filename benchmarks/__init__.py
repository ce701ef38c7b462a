"""Side-by-side benchmarks that print ratios.

``python -m benchmarks`` runs every scenario (docs/benchmarks.md):

- ``harness``: what a scenario declares; the interleaved, repeated run;
- ``systems``: the systems under test, behind one session API;
- ``workflows`` (``linear10``, ``fanout8``), ``async_resume``,
  ``telemetry_scenario`` (``telemetry_overhead``'s figures), ``storage``:
  the scenarios;
- ``report``: the table, the targets, the machine, the JSON.

``telemetry_overhead`` and ``distributed`` also run on their own
(``python -m benchmarks.telemetry_overhead``, ``python -m benchmarks.distributed``).
"""
