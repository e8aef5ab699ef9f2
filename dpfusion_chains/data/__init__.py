"""Bundled synthetic records (invented people and values) for the demo, examples and audits."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

RECORDS_FILE = Path(__file__).resolve().parent / "records.json"
DOMAINS = ("health", "legal", "finance")


@lru_cache(maxsize=1)
def _all_records() -> tuple[dict[str, Any], ...]:
    if not RECORDS_FILE.is_file():
        raise FileNotFoundError(f"bundled records missing at {RECORDS_FILE}; reinstall dpfusion-chains")
    return tuple(json.loads(RECORDS_FILE.read_text(encoding="utf-8")))


def load_records(domain: str | None = None) -> list[dict[str, Any]]:
    """Records as dicts: id, domain, title, text, spans (labelled sensitive spans), questions."""
    if domain is not None and domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    return [dict(r) for r in _all_records() if domain is None or r["domain"] == domain]
