"""The MOOC-size data set script (``tests/benchmarks/oulad_scale.py``): what it promises.

The full 10.7-million-row click table is not in ``../shared``; the script rebuilds one of
that size from the real head. Checked here at a size that takes a second: the exact row
count, real students and sites of each course, the calendar filled, and the same bytes twice.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict

import pytest

from tests.benchmarks import oulad_scale
from tests.events_fixtures import OULAD

pytestmark = pytest.mark.skipif(
    not (OULAD / "original_format" / "studentVle_head13905.csv").is_file(),
    reason=f"the OULAD head is not at {OULAD} (../shared beside the repository)",
)


def _registrations():
    out = defaultdict(set)
    for r in csv.DictReader((OULAD / "original_format" / "studentRegistration.csv").open()):
        out[(r["code_module"], r["code_presentation"])].add(r["id_student"])
    return out


def _sites():
    out = defaultdict(set)
    for r in csv.DictReader((OULAD / "original_format" / "vle.csv").open()):
        out[(r["code_module"], r["code_presentation"])].add(r["id_site"])
    return out


def test_the_rows_are_exactly_as_many_as_asked_and_refer_to_real_students_and_sites(tmp_path):
    out = tmp_path / "vle.csv"
    oulad_scale.main([str(out), "--rows", "400000", "--oulad", str(OULAD)])
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 400_000
    registered, sites = _registrations(), _sites()
    lengths = {
        (r["code_module"], r["code_presentation"]): int(r["module_presentation_length"])
        for r in csv.DictReader((OULAD / "original_format" / "courses.csv").open())
    }
    days, counts = defaultdict(set), defaultdict(int)
    for r in rows:
        key = (r["code_module"], r["code_presentation"])
        assert r["id_student"] in registered[key], r
        assert r["id_site"] in sites[key], r
        day = int(r["date"])
        assert -10 <= day <= lengths[key], r
        days[key].add(day)
        counts[key] += 1
    assert len(days) == 22  # every module presentation has rows
    # a course with two copies of the head or more has them spread over its presentation,
    # not piled at its start (a smaller share is the head's first rows only)
    spread = [key for key, n in counts.items() if n >= 2 * 13_905]
    assert spread, counts
    for key in spread:
        assert max(days[key]) > lengths[key] / 2, (key, max(days[key]))


def test_the_same_inputs_give_the_same_bytes(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for path in (a, b):
        oulad_scale.main([str(path), "--rows", "50000", "--oulad", str(OULAD)])
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def test_allocation_is_exact_and_proportional():
    counts = oulad_scale.allocate(10, {"a": 1, "b": 1, "c": 1})
    assert sum(counts.values()) == 10 and sorted(counts.values()) == [3, 3, 4]
    assert oulad_scale.allocate(7, {"x": 6, "y": 1}) == {"x": 6, "y": 1}


def test_a_bad_size_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        oulad_scale.main([str(tmp_path / "x.csv"), "--rows", "0"])
    assert "--rows must be at least 1" in capsys.readouterr().err
