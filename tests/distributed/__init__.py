"""Tests of the distributed runner (PostgreSQL + procrastinate).

A package, so that its modules import as ``distributed.<name>`` both here and
in the worker subprocesses (which get ``tests/`` on ``PYTHONPATH``): the
state stores workflows by import path, and both sides must agree on it.
"""
