"""Built-in steps: ``Done``, ``Wait``, ``WaitForEvent`` and ``Debug``."""

from .builtin import Debug as Debug
from .builtin import Done as Done
from .builtin import Wait as Wait
from .builtin import WaitForEvent as WaitForEvent

__all__ = ["Debug", "Done", "Wait", "WaitForEvent"]
