"""Issue #13, defect 3's test: malformed values into every field of a statement and every
parameter of every resource (Hypothesis); never a 500, always the one error shape.

A real events service (SQLite and PostgreSQL, :func:`tests.events_fixtures.two_courses_lms`)
over real HTTP. Each example replaces one field (or parameter) with an arbitrary JSON value
(or string); the answer is a success or ``{error, message, request_id}`` with a 4xx.
"""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.events_fixtures import postgres_url, two_courses_lms  # noqa: F401
from tests.test_xapi import ACTIVITY

lms = two_courses_lms()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def paths(value, prefix=()):
    """Every path (a tuple of keys and indexes) into ``value``."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


STATEMENT_PATHS = [p for p in paths(ACTIVITY) if p]

PARAMETERS = {  # resource: its parameters, with valid values to start from
    "/statements": {"agent": '{"mbox": "mailto:a@example.org"}', "verb": "http://x.org/v",
                    "activity": "http://x.org/a", "registration": "6f0a4f56-2d1c-4d55-9b2b-0d3f4a9f2e11",
                    "since": "2026-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z", "limit": "3",
                    "format": "exact", "attachments": "false", "ascending": "true"},
    "/activities/state": {"activityId": "http://x.org/a", "agent": '{"mbox": "mailto:a@example.org"}',
                          "registration": "6f0a4f56-2d1c-4d55-9b2b-0d3f4a9f2e11", "stateId": "s"},
    "/activities/profile": {"activityId": "http://x.org/a", "profileId": "p"},
    "/agents/profile": {"agent": '{"mbox": "mailto:a@example.org"}', "profileId": "p"},
    "/activities": {"activityId": "http://x.org/a"},
    "/agents": {"agent": '{"mbox": "mailto:a@example.org"}'},
}  # fmt: skip
PARAMETER_CASES = [(r, p) for r, params in PARAMETERS.items() for p in params]


def assert_no_500(r) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400 and r.request.method != "HEAD":
        body = r.json()
        assert body.keys() >= {"error", "message", "request_id"}, body
        assert r.headers["X-Experience-API-Version"] == "1.0.3"


def replaced(statement: dict, path: tuple, value) -> dict:
    s = copy.deepcopy(statement)
    target = s
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return s


_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_SETTINGS
@given(data=st.data())
async def test_a_malformed_field_of_a_statement_never_gives_a_500(lms, data):
    path = data.draw(st.sampled_from(STATEMENT_PATHS), label="field")
    value = data.draw(json_values, label="value")
    statement = replaced(ACTIVITY, path, value)
    r = await lms["ds101"].post("/statements", content=json.dumps(statement))
    assert_no_500(r)


@_SETTINGS
@given(data=st.data())
async def test_a_malformed_parameter_of_a_resource_never_gives_a_500(lms, data):
    resource, name = data.draw(st.sampled_from(PARAMETER_CASES), label="parameter")
    method = data.draw(st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE"]), label="method")
    value = data.draw(st.text(max_size=40) | json_values.map(json.dumps), label="value")
    params = {**PARAMETERS[resource], name: value}
    r = await lms["ds101"].request(method, resource, params=params, json={"k": 1})
    assert_no_500(r)
