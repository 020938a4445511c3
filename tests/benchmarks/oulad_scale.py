"""Build a full-size OULAD click table (``studentVle.csv``) from the 13,905-row head in
``../shared/data/oulad``, so that the MOOC-size figures can be rerun anywhere.

    .venv/bin/python tests/benchmarks/oulad_scale.py OUT.csv [--rows 10655280]
    hub-ext import oulad ../shared/data/oulad --vle OUT.csv --db sqlite:///big.sqlite

The real table (10,655,280 rows, about 443 MB) is not redistributed here; its first 13,905
rows are (module AAA, presentation 2013J, days -10..2). How the head is replicated:

- **Over the real courses.** Each of OULAD's 22 module presentations (``courses.csv``) gets
  rows in proportion to its registered students times its length in days (largest
  remainder, so the total is exact), with its **own** students (``studentRegistration.csv``)
  and its **own** VLE sites (``vle.csv``): every row refers to a real student of that course
  and a real site of it, so the import's joins (registrations, sites) hold as on the real table.
- **Copies of the head.** A course's rows are successive copies of the head. Copy *k* maps
  the head's *i*-th student (in order of first appearance) to the course's student
  ``(i + k·H) mod S`` and its *j*-th site to the course's site ``(j + 7k) mod V`` (H head
  students, S course students, V course sites), and shifts the head's days by ``13·b``
  days: the course's C copies are spread evenly over its B 13-day blocks from day -10 to
  its last day: ``b = k·B // C`` when there are fewer copies than blocks, else
  ``b = k mod B`` (a shifted day past the last is folded back into the course). So
  each copy keeps the head's shape (a day's clicks per student and site) while the class and
  the whole calendar fill up; the last copy of a course is cut at its allocation.
- **Deterministic.** The same inputs and ``--rows`` give the same file, byte for byte (the
  SHA-256 is printed); no randomness.

The output is in the release's format (every field double-quoted). OULAD: Kuzilek J.,
Hlosta M., Zdrahal Z. (2017), Scientific Data 4:170171, doi:10.1038/sdata.2017.171, CC BY 4.0.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OULAD = REPO.parent / "shared" / "data" / "oulad"
FULL_ROWS = 10_655_280
BLOCK_DAYS = 13  # the head spans days -10..2
FIRST_DAY = -10


def _rows(path: Path):
    with path.open(newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)


def read_inputs(oulad: Path) -> dict:
    original = oulad / "original_format"
    head = list(_rows(original / "studentVle_head13905.csv"))
    courses = [
        (r["code_module"], r["code_presentation"], int(r["module_presentation_length"]))
        for r in _rows(original / "courses.csv")
    ]
    students: dict[tuple, list[int]] = defaultdict(list)
    for r in _rows(original / "studentRegistration.csv"):
        students[(r["code_module"], r["code_presentation"])].append(int(r["id_student"]))
    sites: dict[tuple, list[int]] = defaultdict(list)
    for r in _rows(original / "vle.csv"):
        sites[(r["code_module"], r["code_presentation"])].append(int(r["id_site"]))
    return {
        "head": head,
        "courses": courses,
        "students": {k: sorted(set(v)) for k, v in students.items()},
        "sites": {k: sorted(set(v)) for k, v in sites.items()},
    }


def allocate(total: int, weights: dict[tuple, int]) -> dict[tuple, int]:
    """``total`` split in proportion to ``weights`` (largest remainder: the sum is exact)."""
    whole = sum(weights.values())
    shares = {k: total * w / whole for k, w in weights.items()}
    counts = {k: int(s) for k, s in shares.items()}
    left = total - sum(counts.values())
    for k in sorted(shares, key=lambda k: (counts[k] - shares[k], k))[:left]:
        counts[k] += 1
    return counts


def _order_of_appearance(values) -> dict:
    order: dict = {}
    for v in values:
        order.setdefault(v, len(order))
    return order


def generate(inputs: dict, rows: int):
    """The replicated rows, course by course: tuples in the release's column order."""
    head = inputs["head"]
    head_students = _order_of_appearance(int(r["id_student"]) for r in head)
    head_sites = _order_of_appearance(int(r["id_site"]) for r in head)
    parsed = [
        (
            head_students[int(r["id_student"])],
            head_sites[int(r["id_site"])],
            int(r["date"]),
            r["sum_click"],
        )
        for r in head
    ]
    h = len(head_students)
    courses = [
        c for c in inputs["courses"] if inputs["students"].get(c[:2]) and inputs["sites"].get(c[:2])
    ]
    weights = {c[:2]: len(inputs["students"][c[:2]]) * c[2] for c in courses}
    counts = allocate(rows, weights)
    for module, presentation, length in courses:
        key = (module, presentation)
        students, sites = inputs["students"][key], inputs["sites"][key]
        s, v = len(students), len(sites)
        blocks = max(1, -(-(length - FIRST_DAY + 1) // BLOCK_DAYS))
        span = length - FIRST_DAY + 1
        left, k = counts[key], 0
        copies = -(-left // len(parsed))
        while left > 0:
            block = k % blocks if copies >= blocks else k * blocks // copies
            shift = BLOCK_DAYS * block
            for i, j, day, clicks in parsed[:left]:
                d = day + shift
                if d > length:
                    d = FIRST_DAY + (d - FIRST_DAY) % span
                yield (
                    module,
                    presentation,
                    students[(i + k * h) % s],
                    sites[(j + 7 * k) % v],
                    d,
                    clicks,
                )
            left -= min(left, len(parsed))
            k += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the studentVle CSV to write")
    parser.add_argument(
        "--rows",
        type=int,
        default=FULL_ROWS,
        help=f"rows (default {FULL_ROWS:,}, the real table's)",
    )
    parser.add_argument(
        "--oulad", type=Path, default=OULAD, help=f"the OULAD directory (default {OULAD})"
    )
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    if not (args.oulad / "original_format" / "studentVle_head13905.csv").is_file():
        sys.exit(
            f"{args.oulad}: no original_format/studentVle_head13905.csv (is ../shared beside the repository?)"
        )
    t0 = time.perf_counter()
    inputs = read_inputs(args.oulad)
    digest = hashlib.sha256()
    n = 0
    tmp = args.out.with_name(args.out.name + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
        out.writerow(
            ["code_module", "code_presentation", "id_student", "id_site", "date", "sum_click"]
        )
        for row in generate(inputs, args.rows):
            out.writerow(row)
            n += 1
    tmp.replace(args.out)
    with args.out.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    size = args.out.stat().st_size
    print(
        f"{args.out}: {n:,} rows, {size / 1e6:,.0f} MB, sha256 {digest.hexdigest()[:16]}, "
        f"{time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
