"""End-to-end tests of ``hephaestus instances ...`` and ``hephaestus workflows ...``.

A package, so that its modules import as ``cli.<name>`` both here and in the
command's processes (which get ``tests/`` on ``PYTHONPATH``): a database
keeps workflows by import path, and both sides must agree on it.
"""
