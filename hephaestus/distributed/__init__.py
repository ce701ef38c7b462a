"""The distributed runner: workflows run by any number of worker processes sharing PostgreSQL.

Needs the extra: ``pip install 'hephaestus[distributed]'`` (procrastinate and
psycopg). ``DistributedRunner`` has the API of ``LocalRunner`` and can be used
from any process; ``Worker`` executes the steps. See ``docs/distributed.md``.
"""

try:
    import procrastinate as _procrastinate  # noqa: F401  # fail early with a clear message
except ImportError as exc:  # pragma: no cover - depends on the extras installed
    raise ImportError(
        "the distributed runner needs procrastinate: pip install 'hephaestus[distributed]'"
    ) from exc

from hephaestus.distributed._backend import make_pool as make_pool
from hephaestus.distributed._backend import migrate as migrate
from hephaestus.distributed.runner import DistributedRunner as DistributedRunner
from hephaestus.distributed.worker import Worker as Worker

__all__ = ["DistributedRunner", "Worker", "make_pool", "migrate"]
