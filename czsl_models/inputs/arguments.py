"""Numbers typed on a command line, checked as argparse types, and the one-line refusal every command prints."""

from __future__ import annotations

import argparse
import math
import sys


def print_error(message: str) -> int:
    """Print a one-line error on stderr; the exit status of a refused command."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number (not nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value
