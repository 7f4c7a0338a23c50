"""What every error message of sml shares: the hint to start the stack and the readable line of a cause."""

from __future__ import annotations

STACK_HINT = "is the stack up? run 'make stack-up'"


def first_line(error: BaseException) -> str:
    """The line of an error a person reads: drivers (SQLAlchemy's `orig`) and Hadoop (a Java stack
    trace) put more after it."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__
