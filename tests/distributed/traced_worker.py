"""A traced worker process: ``python -m distributed.traced_worker <dsn> <schema>``.

The crash tests' worker, instrumented with OpenTelemetry: each finished span
is written to the file ``HEPHAESTUS_SPANS`` names, as a JSON line
(``traced.FileExporter``).
"""

from __future__ import annotations

import os
from pathlib import Path

import traced

from distributed import crash_worker

if __name__ == "__main__":
    traced.instrument_to(Path(os.environ["HEPHAESTUS_SPANS"]))
    crash_worker.main()
