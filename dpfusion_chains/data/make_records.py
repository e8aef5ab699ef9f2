"""Generate the bundled synthetic records and the labelled detection evaluation set.

    python -m dpfusion_chains.data.make_records            # writes both files
    python -m dpfusion_chains.data.make_records --check    # fails if either file is stale

Everything is invented: names are drawn from lists of given names and surnames of many origins and
combined at random; numbers are random (IBANs, cards and NHS numbers get valid check digits so
they look real); phone numbers use reserved drama/documentation ranges; IPs and domains use
documentation ranges and example.* names. No record describes a real person.

Labels are exact by construction: texts are assembled piece by piece and each sensitive value's
offsets are recorded as it is appended (never found by searching). Labelling conventions:
PERSON is the name without its title ("Dr"); AGE the number only; ID the value without its
keyword ("MRN 443-21" -> "443-21"); ADDRESS the street line (house number, flat) and, separately,
the postcode; the town is LOCATION; MONEY includes currency and sign; ORGANIZATION is labelled in
these domain texts for care facilities, courts/tribunals, law firms, banks and employers.
Public content (diagnoses, treatments, case types, rulings, transaction categories, account types)
is never labelled, so questions about it stay answerable from the public view.

The bundled records (style "A", seed 7), the evaluation set (style "B", seed 2024, templates in
tests/data/eval_templates.py) and two held-out sets (style "C", seed 99, holdout_templates.py, and
style "D", seed 5, holdout2_templates.py; see their docstrings for how far each was kept from
tuning) use disjoint name/place pools, different templates, and different formats for dates,
phones, IDs and money. The builder (Doc, Ent, Maker, Style, build) is in builder.py, style A's
templates in style_a.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dpfusion_chains.data.builder import Style, build
from dpfusion_chains.data.style_a import STYLE_A

HERE = Path(__file__).resolve().parent
RECORDS_PATH = HERE / "records.json"
EVAL_PATH = HERE.parents[1] / "tests" / "data" / "detect_eval.jsonl"
HOLDOUT_PATH = EVAL_PATH.with_name("detect_holdout.jsonl")
HOLDOUT2_PATH = EVAL_PATH.with_name("detect_holdout2.jsonl")


def _load_style(filename: str) -> Style:
    # Evaluation templates live beside the evaluation sets (tests/data), outside the package:
    # they are what the detectors are measured on, not something they ship with.
    import importlib.util

    path = EVAL_PATH.parent / filename
    spec = importlib.util.spec_from_file_location(f"dpfusion_{path.stem}", path)
    if spec is None or spec.loader is None or not path.exists():
        raise FileNotFoundError(f"evaluation templates not found: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STYLE  # type: ignore[no-any-return]


def generate() -> dict[Path, list[dict[str, object]]]:
    """Bundled records (style A), the evaluation set (B) and the held-out sets (C, D)."""
    return {
        RECORDS_PATH: build(STYLE_A, 63, seed=7, prefix="rec"),
        EVAL_PATH: build(_load_style("eval_templates.py"), 240, seed=2024, prefix="eval"),
        HOLDOUT_PATH: build(_load_style("holdout_templates.py"), 120, seed=99, prefix="hold"),
        HOLDOUT2_PATH: build(_load_style("holdout2_templates.py"), 60, seed=5, prefix="hold2"),
    }


def _dump_records(records: list[dict[str, object]]) -> str:
    slim = [{k: v for k, v in r.items() if k != "template"} for r in records]
    return json.dumps(slim, ensure_ascii=False, indent=1) + "\n"


def _dump_eval(records: list[dict[str, object]]) -> str:
    slim = [{k: v for k, v in r.items() if k != "questions"} for r in records]
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in slim)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the files on disk match the generator")
    args = parser.parse_args(argv)
    outputs = {path: (_dump_records(records) if path == RECORDS_PATH else _dump_eval(records)) for path, records in generate().items()}
    if args.check:
        stale = [str(p) for p, content in outputs.items() if not p.exists() or p.read_text(encoding="utf-8") != content]
        if stale:
            print("stale: " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for path, content in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
