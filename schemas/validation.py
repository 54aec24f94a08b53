"""How a pydantic validation error is told to a user: one line per offending field, by its
dotted path (configuration files, withdrawal policies)."""

from __future__ import annotations

from pydantic import ValidationError


def describe_errors(heading: str, exc: ValidationError) -> str:
    lines = [heading]
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)
