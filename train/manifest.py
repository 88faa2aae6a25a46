"""Reading and writing ``models/manifest.json``, the one file the runtime's registry trusts."""

from __future__ import annotations

import json
from pathlib import Path


def read(path: Path) -> dict:
    """The manifest at ``path``; an empty one where there is none yet."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {"models": []}


def write(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
