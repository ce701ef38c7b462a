"""The ``hephaestus`` command, run as users run it: in a process of its own."""

from __future__ import annotations

import subprocess
import sys


class TestDemo:
    def test_the_demo_completes_both_orders(self) -> None:
        """`python -m hephaestus demo` runs both orders to completion and says so."""
        result = subprocess.run(
            [sys.executable, "-m", "hephaestus", "demo"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode, result.stderr
        lines = result.stdout.splitlines()
        assert any(
            line.startswith("OrderFlow::order::1001: completed (ValidateOrder") for line in lines
        )
        assert any(
            line.startswith("OrderFlow::order::1002: completed (ValidateOrder") for line in lines
        )
        assert "[OrderFlow::order::1001] Step WaitForEvent resumed with received" in result.stdout

    def test_a_command_is_required(self) -> None:
        """Without a command, a one-line error points at --help; the exit status is 2."""
        result = subprocess.run(
            [sys.executable, "-m", "hephaestus"], capture_output=True, text=True, check=False
        )
        assert 2 == result.returncode
        assert [
            "hephaestus: the following arguments are required: COMMAND (see hephaestus --help)"
        ] == result.stderr.splitlines()
