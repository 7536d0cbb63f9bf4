"""The chart README's values table, made from ``values.yaml``'s ``# --`` comments.

Every key in values.yaml is either documented (a ``# --`` comment right above it, continued by
``#`` lines) or a section whose keys all are. ``python -m tests.deploy.chart_docs`` prints the
table; a test keeps helm/rivulet/README.md equal to it and fails on an undocumented key.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

VALUES = Path(__file__).resolve().parents[2] / "helm" / "rivulet" / "values.yaml"
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_]+):(?P<rest>.*)$")


@dataclass(frozen=True, slots=True)
class Value:
    path: str
    default: Any
    description: str


def parse(text: str) -> tuple[list[Value], list[str]]:
    """The documented values, and the paths of keys that are neither documented nor sections."""
    data = yaml.safe_load(text)
    values: list[Value] = []
    undocumented: list[str] = []
    stack: list[tuple[int, str]] = []
    doc: list[str] | None = None
    inside: int | None = None  # indent of the documented key whose block we are in
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if inside is not None:
            if not stripped or (indent > inside and not stripped.startswith("# --")):
                continue
            inside = None
        if stripped.startswith("# --"):
            doc = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if doc is not None:
                doc.append(stripped[1:].strip())
            continue
        match = _KEY.match(line)
        if not match:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        path = ".".join(k for _, k in stack)
        if doc is not None:
            node: Any = data
            for key in path.split("."):
                node = node[key]
            values.append(Value(path, node, " ".join(doc)))
            doc = None
            inside = indent
        elif match["rest"].strip():
            undocumented.append(path)
    return values, undocumented


def table(values: list[Value]) -> str:
    """A markdown table: key, default, description."""
    rows = ["| Key | Default | Description |", "|---|---|---|"]
    for v in values:
        default = json.dumps(v.default, separators=(", ", ": "))
        rows.append(f"| `{v.path}` | `{default}` | {v.description} |")
    return "\n".join(rows) + "\n"


def main() -> int:
    values, undocumented = parse(VALUES.read_text())
    if undocumented:
        print("undocumented values: " + ", ".join(undocumented), file=sys.stderr)
        return 1
    sys.stdout.write(table(values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
