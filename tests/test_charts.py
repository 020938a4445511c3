"""The shipped notebooks' charts: valid Vega-Lite v5, one data point per row the query answered.

Real parts: the OULAD import (tests/events_fixtures.py) and the FutureLearn slice
(tests/data/futurelearn) in SQLite stores, the query functions over them, and Vega-Lite's own
JSON schema. The schema is ``node_modules/vega-lite/build/vega-lite-schema.json`` when the
pages' npm package is installed; otherwise the published package, vega-lite 5.23.0, fetched
once from the npm registry with ``npm pack`` into pytest's cache and checked against its
registry integrity (sha512) before use. The heat-map's cells are recomputed here from the
OULAD CSV files with the csv module.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
from collections import defaultdict
from pathlib import Path

import jsonschema
import pytest

from hub_ext.services.events import charts
from hub_ext.services.events import queries as q
from tests.events_fixtures import REPO, oulad_facts, oulad_store  # noqa: F401

COURSE = "aaa-2013j"
VEGA_LITE = "vega-lite@5.23.0"
VEGA_LITE_INTEGRITY = "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA=="


def _schema_file(cache_dir: Path) -> Path:
    installed = REPO / "node_modules" / "vega-lite" / "build" / "vega-lite-schema.json"
    if installed.is_file():
        return installed
    schema = cache_dir / "vega-lite-schema.json"
    if schema.is_file():
        return schema
    if shutil.which("npm") is None:
        pytest.skip(
            "no Vega-Lite schema: node_modules/vega-lite is absent and npm is not installed"
        )
    done = subprocess.run(
        ["npm", "pack", VEGA_LITE, "--pack-destination", str(cache_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.skip(f"no Vega-Lite schema: `npm pack {VEGA_LITE}` failed: {done.stderr[-400:]}")
    tarball = cache_dir / done.stdout.strip().splitlines()[-1]
    digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    assert f"sha512-{digest}" == VEGA_LITE_INTEGRITY, f"{tarball} is not the published {VEGA_LITE}"
    with tarfile.open(tarball) as tar:
        member = tar.extractfile("package/build/vega-lite-schema.json")
        schema.write_bytes(member.read())
    return schema


@pytest.fixture(scope="session")
def vega_lite(request) -> jsonschema.Draft7Validator:
    """A validator of Vega-Lite v5's top-level specification."""
    path = _schema_file(Path(request.config.cache.mkdir("vega-lite")))
    schema = json.loads(path.read_text())
    # its $refs name generics (`Foo<Bar>`), not strict URI references: no format checks
    jsonschema.Draft7Validator.check_schema(schema, format_checker=None)
    return jsonschema.Draft7Validator(schema)


def assert_valid(validator, spec: dict) -> None:
    errors = sorted(validator.iter_errors(spec), key=lambda e: len(list(e.absolute_path)))
    assert not errors, [(list(e.absolute_path), e.message[:300]) for e in errors[:3]]
    assert spec["$schema"] == charts.SCHEMA and "vega-lite" in spec["$schema"]
    assert json.loads(json.dumps(spec)) == spec  # JSON as it is, no dates left to convert


def titles(spec) -> list[str]:
    """Every title in a spec (axes, legends, views), wherever it is."""
    found = []
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key == "title" and isinstance(value, str):
                found.append(value)
            found += titles(value)
    elif isinstance(spec, list):
        for value in spec:
            found += titles(value)
    return found


def channel_title(view: dict, channel: str) -> str:
    enc = view.get("encoding", {}).get(channel)
    if enc is None:
        enc = next(
            layer["encoding"][channel]
            for layer in view["layer"]
            if channel in layer.get("encoding", {})
        )
    return enc["title"]


@pytest.fixture(scope="module")
def engine(oulad_store):  # noqa: F811
    return oulad_store.engine


# --------------------------------------------------------------------------- the schema itself


def test_the_schema_refuses_what_vega_lite_would_not_draw(vega_lite):
    """The check can fail: a misspelt mark, a field type Vega-Lite does not know, no mark."""
    spec = {"$schema": charts.SCHEMA, "data": {"values": [{"a": 1}]}, "mark": "bar",
            "encoding": {"x": {"field": "a", "type": "quantitative"}}}  # fmt: skip
    assert not list(vega_lite.iter_errors(spec))
    assert list(vega_lite.iter_errors({**spec, "mark": "barz"}))
    broken = json.loads(json.dumps(spec))
    broken["encoding"]["x"]["type"] = "number"
    assert list(vega_lite.iter_errors(broken))
    assert list(vega_lite.iter_errors({k: v for k, v in spec.items() if k != "mark"}))


# --------------------------------------------------------------------------- each chart over OULAD


def test_heatmap_cells_match_the_csv_and_colour_by_the_measure(vega_lite, engine, oulad_facts):  # noqa: F811
    cells = defaultdict(lambda: [0, set()])
    for r in oulad_facts.rows("studentVle"):
        if (r["code_module"], r["code_presentation"]) == ("AAA", "2013J"):
            cell = cells[(f"urn:oulad:site:{r['id_site']}", int(r["date"]) // 7)]
            cell[0] += int(r["sum_click"])
            cell[1].add(r["id_student"])
    answer = q.resource_weeks(engine, COURSE)
    got = {(c["resource"], c["week"]): (c["clicks"], c["learners"]) for c in answer["cells"]
           if c["resource"].startswith("urn:oulad:site:")}  # fmt: skip
    assert got == {k: (n, len(who)) for k, (n, who) in cells.items()}
    assert answer["start"] == "2013-10-01" and min(w for _, w in got) < 0  # before the start
    for measure, title in (("clicks", "VLE clicks"), ("learners", "distinct learners")):
        spec = charts.heatmap(q.resource_weeks(engine, COURSE, limit=25), measure)
        assert_valid(vega_lite, spec)
        shown = q.resource_weeks(engine, COURSE, limit=25)
        assert len(spec["data"]["values"]) == len(shown["cells"]) > 25
        assert spec["encoding"]["color"]["field"] == measure
        assert spec["encoding"]["color"]["title"] == title
        assert len(spec["encoding"]["y"]["sort"]) == 25 == len(set(spec["encoding"]["y"]["sort"]))
        assert "week" in spec["encoding"]["x"]["title"]
    # rows keep the data route's order: most clicked first
    ranked = q.heatmap(engine, COURSE, limit=3)["resources"]
    spec = charts.heatmap(q.resource_weeks(engine, COURSE, limit=3))
    assert [v["resource"] for v in spec["data"]["values"]][0] == ranked[0]["resource"]
    with pytest.raises(ValueError, match="measure"):
        charts.heatmap(answer, "minutes")


def test_heatmap_filters_by_group_and_by_learner(vega_lite, engine, oulad_facts):  # noqa: F811
    failed = {r["id_student"] for r in oulad_facts.rows("studentInfo")
              if (r["code_module"], r["code_presentation"], r["final_result"]) == ("AAA", "2013J", "Fail")}  # fmt: skip
    clicks = defaultdict(int)
    mine = defaultdict(int)
    for r in oulad_facts.rows("studentVle"):
        if (r["code_module"], r["code_presentation"]) != ("AAA", "2013J"):
            continue
        key = (f"urn:oulad:site:{r['id_site']}", int(r["date"]) // 7)
        if r["id_student"] in failed:
            clicks[key] += int(r["sum_click"])
        if r["id_student"] == "28400":
            mine[key] += int(r["sum_click"])
    group = q.resource_weeks(engine, COURSE, group="final_result:Fail")
    assert {(c["resource"], c["week"]): c["clicks"] for c in group["cells"]
            if c["resource"].startswith("urn:oulad:site:")} == dict(clicks)  # fmt: skip
    one = q.resource_weeks(engine, COURSE, learner="28400")
    assert {(c["resource"], c["week"]): c["clicks"] for c in one["cells"]
            if c["resource"].startswith("urn:oulad:site:")} == dict(mine)  # fmt: skip
    assert all(c["learners"] == 1 for c in one["cells"])
    spec = charts.heatmap(group, "learners")
    assert_valid(vega_lite, spec)
    assert spec["usermeta"]["filters"]["group"] == "final_result:Fail"
    with pytest.raises(q.BadParameter):
        q.resource_weeks(engine, COURSE, group="Fail")


@pytest.mark.parametrize(
    "measure,title", [("learners", "distinct learners"), ("events", "statements"), ("clicks", "VLE clicks")]
)  # fmt: skip
def test_daily_activity_chart(vega_lite, engine, measure, title):
    answer = q.daily_activity(engine, COURSE, measure=measure)
    spec = charts.daily_activity(answer)
    assert_valid(vega_lite, spec)
    assert spec["data"]["values"] == answer["days"] and len(answer["days"]) > 10
    assert channel_title(spec, "y").startswith(title) and title in spec["title"]
    assert spec["encoding"]["x"]["type"] == "temporal"


def test_weekly_engagement_and_funnel_charts(vega_lite, engine):
    weekly = q.weekly_engagement(engine, COURSE)
    spec = charts.weekly_engagement(weekly)
    assert_valid(vega_lite, spec)
    assert spec["data"]["values"] == weekly["weeks"]
    assert channel_title(spec, "y") == "distinct learners active"
    funnel = q.funnel(engine, COURSE)
    spec = charts.funnel(funnel)
    assert_valid(vega_lite, spec)
    assert spec["data"]["values"] == funnel["weeks"]  # folded into three lines by Vega-Lite
    assert spec["transform"][0]["fold"] == ["reached", "active", "active_every_week"]
    assert channel_title(spec, "y") == "distinct learners"


def test_segments_chart_counts_every_learner_once(vega_lite, engine):
    answer = q.segments(engine, COURSE)
    spec = charts.segments(answer)
    assert_valid(vega_lite, spec)
    values = {v["segment"].replace(" ", "_"): v["learners"] for v in spec["data"]["values"]}
    assert values == answer["counts"] and len(values) == 4
    assert (
        "VLE clicks" in channel_title(spec, "x") and channel_title(spec, "y") == "distinct learners"
    )
    assert answer["rule"] in spec["description"]


def test_learner_profile_page(vega_lite, engine):
    answer = q.learner_profile(engine, COURSE, "28400")
    spec = charts.learner_profile(answer)
    assert_valid(vega_lite, spec)
    timeline, completion, scores = spec["vconcat"]
    assert timeline["data"]["values"] == answer["weeks"]
    assert completion["data"]["values"] == answer["completion_by_week"]
    assert len(scores["data"]["values"]) == len(answer["assessments"]) > 0
    statuses = {a["status"] for a in scores["data"]["values"]}
    assert statuses <= {"on time", "late", "missing"} and statuses
    assert channel_title(timeline, "y") == "VLE clicks"
    assert "score" in channel_title(scores, "y")
    assert "28400" in spec["title"] and spec["usermeta"]["learner"] == "28400"


def test_sessions_chart(vega_lite, engine):
    answer = q.sessions(engine, COURSE, "28400", gap_minutes=1440)
    spec = charts.sessions(answer)
    assert_valid(vega_lite, spec)
    assert len(spec["data"]["values"]) == len(answer["sessions"]) > 1
    assert "minutes" in channel_title(spec, "y")
    assert channel_title(spec, "size") == "statements (every event)"
    assert "1440 minutes" in spec["description"]


def test_assessments_chart_shows_the_distribution_and_late_and_missing(vega_lite, engine):
    answer = q.assessment_scores(engine, COURSE)
    spec = charts.assessments(answer)
    assert_valid(vega_lite, spec)
    distribution, submitted = spec["hconcat"]
    assert len(distribution["data"]["values"]) == 10 * len(answer["assessments"])
    assert sum(v["count"] for v in distribution["data"]["values"]) == sum(
        a["scored"] for a in answer["assessments"]
    )
    by = defaultdict(dict)
    for v in submitted["data"]["values"]:
        by[v["assessment"]][v["status"]] = v["submissions"]
    for a in answer["assessments"]:
        row = by[a["assessment"].rsplit(":", 1)[-1]]
        assert row == {
            "on time": a["submitted"] - a["late"],
            "late": a["late"],
            "missing": a["missing"],
        }
    assert any(r["late"] for r in by.values()) and any(r["missing"] for r in by.values())
    assert channel_title(distribution, "color") == "submissions"
    assert channel_title(submitted, "x").startswith("submissions")


def test_time_on_step_chart_over_futurelearn(vega_lite, tmp_path):
    from tests.test_notebooks_events import FL_COURSE, fl_store  # it imports this module

    answer = q.time_on_step(fl_store(tmp_path).engine, FL_COURSE)
    spec = charts.time_on_step(answer)
    assert_valid(vega_lite, spec)
    assert len(spec["data"]["values"]) == len(answer["steps"]) > 3
    assert spec["encoding"]["y"]["sort"][:2] == [
        s["step"].rsplit(":", 1)[1] for s in answer["steps"][:2]
    ]
    assert "per learner" in channel_title(spec, "x") and answer["rule"] in spec["description"]


def test_empty_course_charts_are_valid_and_empty(vega_lite, tmp_path):
    """A course with no events yet (a run before it opens): every chart is drawn empty."""
    from hub_ext.services.events.store import EventStore

    store = EventStore(f"sqlite:///{tmp_path / 'empty.db'}")
    store.create()
    e = store.engine
    for spec in (
        charts.heatmap(q.resource_weeks(e, "nobody")),
        charts.daily_activity(q.daily_activity(e, "nobody")),
        charts.weekly_engagement(q.weekly_engagement(e, "nobody")),
        charts.funnel(q.funnel(e, "nobody")),
        charts.time_on_step(q.time_on_step(e, "nobody")),
        charts.assessments(q.assessment_scores(e, "nobody")),
    ):
        assert_valid(vega_lite, spec)
        views = spec.get("hconcat") or [spec]
        assert all(v["data"]["values"] == [] for v in views), spec["title"]
    spec = charts.segments(q.segments(e, "nobody"))
    assert_valid(vega_lite, spec)
    assert [v["learners"] for v in spec["data"]["values"]] == [0, 0, 0, 0]
    store.dispose()


def test_every_chart_says_what_it_counts(engine):
    """Axis and legend titles use the README's words: VLE clicks, distinct learners,
    submissions, statements; never a bare "count" or "value"."""
    specs = [
        charts.heatmap(q.resource_weeks(engine, COURSE, limit=5)),
        charts.daily_activity(q.daily_activity(engine, COURSE)),
        charts.weekly_engagement(q.weekly_engagement(engine, COURSE)),
        charts.funnel(q.funnel(engine, COURSE)),
        charts.segments(q.segments(engine, COURSE)),
        charts.learner_profile(q.learner_profile(engine, COURSE, "28400")),
        charts.sessions(q.sessions(engine, COURSE, "28400")),
        charts.assessments(q.assessment_scores(engine, COURSE)),
    ]
    for spec in specs:
        words = titles(spec)
        assert words and not {"count", "value", "clicks", "learners"} & {w.lower() for w in words}
        assert spec["description"]


def test_no_such_learner_is_no_chart(engine):
    """The route answers 404 for a learner the course does not have, as its data route does."""
    assert charts.learner_profile(q.learner_profile(engine, COURSE, "999999999")) is None
    assert charts.sessions(q.sessions(engine, COURSE, "999999999")) is None
