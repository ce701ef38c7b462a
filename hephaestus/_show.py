"""Values shown in messages and stored as text, whatever they are.

A message that names a culprit must not fail on it: ``repr`` and ``str`` of
user values may raise (a broken ``__str__``, an integer of more digits than
Python converts) or be enormous. These helpers never raise and cut what they
show to ``limit`` characters.
"""

from __future__ import annotations

__all__ = ["seconds", "shown", "storable", "text_of"]


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters; a placeholder if ``repr`` fails."""
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__, or an int too long to convert
        text = f"<{type(value).__qualname__} that cannot be shown: {type(exc).__qualname__}>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def text_of(error: BaseException) -> str:
    """``"Type: message"`` of an exception; the message replaced if ``str`` fails."""
    try:
        message = str(error)
    except Exception as exc:
        message = f"<message that cannot be shown: {type(exc).__qualname__}>"
    if getattr(type(error), "shown_as_raised", False):  # raised elsewhere: its text is whole
        return message
    return f"{type(error).__qualname__}: {message}"


def storable(text: str) -> str:
    """``text`` with what no storage keeps (NUL, lone surrogates) replaced."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def seconds(value: float) -> str:
    """``5.0`` -> ``"5"``, ``0.10537`` -> ``"0.105"``: seconds to the millisecond, no zeros."""
    if value >= 100:
        return f"{value:.0f}"
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text != "0" or value == 0 else f"{value:.1g}"
