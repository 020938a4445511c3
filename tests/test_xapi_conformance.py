"""xAPI 1.0.3 conformance: the specification's requirements, as ADL numbers them, one test
(or one parametrised case) per requirement with its ``XAPI-000nn`` number in its id.

The requirements and their numbers are those of ADL's LRS conformance test suite
(github.com/adlnet/lrs-conformance-test-suite, ``test/v1_0_3``), read against the
specification itself (github.com/adlnet/xAPI-Spec, xAPI-Data.md and xAPI-Communication.md);
the tests are this repository's own. Each runs against a real events service over HTTP,
once on SQLite and once on PostgreSQL: one service per store for the whole module
(:func:`tests.events_fixtures.two_courses_lms`), with a source of ds101 and one of stat200.
Statements and documents are made unique per test (fresh ids, activities and agents), so
that tests sharing a store do not see each other's rows.

Where many requirements share a shape they are tables: :data:`INVALID` (a statement the
specification calls invalid: 400 naming the field, nothing stored), :data:`VALID` (one it
allows: 200, read back), :data:`REFUSED_REQUESTS` (a request with a missing or malformed
parameter: 400 naming it). The rest are tests of their own.

Numbers ADL lists that are not here, and why (none is marked xfail):

- XAPI-00021 (multiplicity of every property): ADL does not test it ("the community said
  this won't be a problem"); the cardinalities it stands for are the tables' cases.
- XAPI-00050 to -00055, -00058, -00062, -00063, -00095, -00136 to -00138, -00152: numbers
  ADL removed or never used; XAPI-00112, -00141, -00222, -00246, -00247: ADL's duplicates of
  requirements tested here under the number ADL keeps (-00149; -00195, -00275, -00294;
  -00195; -00248).
- XAPI-00140 ("implements all of the sub-APIs"): the sum of the resource tests here.
- XAPI-00185, -00186: ADL calls them untestable (a document's content is not inspected).
- XAPI-00205, -00223, -00224 to -00226, -00228, -00276, -00277, -00304 to -00307: ADL's
  placeholders for parameters tested under another number (the ``since``/``agent`` cases of
  :data:`REFUSED_REQUESTS`); the one behaviour they name, a parameter a resource does not
  take, is XAPI-00324 here.
- XAPI-00320 (About's ``extensions``): ADL withdrew it (optional in the specification);
  About's extension is checked with XAPI-00319.
- XAPI-00323 ("only the error codes of this specification"), XAPI-00329 (500 on a server
  fault): no request can be made to show either; ``test_xapi.py``'s hostile inputs check
  that no input gives a 500.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from hub_ext.services.events.models import Statement, StatementActivity, StatementAgent
from hub_ext.services.events.xapi import to_row, validate_statement
from tests.events_fixtures import postgres_url, two_courses_lms  # noqa: F401
from tests.test_xapi import assert_error
from tests.test_xapi_attachments import (
    attachment,
    multipart,
    parse_answer,
    part_headers,
    signed,
    signer,
)

lms = two_courses_lms()

VOIDED = "http://adlnet.gov/expapi/verbs/voided"
COURSE = {"grouping": [{"id": "urn:hub-ext:course:ds101"}]}
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def uid() -> str:
    return uuid.uuid4().hex[:12]


def agent(name: str | None = None) -> dict:
    return {"objectType": "Agent", "mbox": f"mailto:{name or uid()}@example.org"}


def statement(**parts) -> dict:
    """A valid statement of ds101, its own id, actor and activity; ``parts`` replace its
    top-level properties (``None`` removes one)."""
    s = {
        "id": str(uuid.uuid4()),
        "actor": {**agent(), "name": "Ada"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced", "display": {"en-US": "experienced"}},
        "object": {
            "objectType": "Activity",
            "id": f"https://lms.example.org/activity/{uid()}",
            "definition": {"name": {"en-US": "Week 1"}, "type": "http://adlnet.gov/expapi/activities/lesson"},
        },
        "context": {"contextActivities": copy.deepcopy(COURSE)},
        "timestamp": "2026-09-14T10:15:00.123Z",
    }  # fmt: skip
    for key, value in parts.items():
        if value is None:
            s.pop(key, None)
        else:
            s[key] = value
    return s


def changed(path: str, value) -> dict:
    """:func:`statement` with the property at ``path`` (dots; ``[n]`` for a list item) set to
    ``value``, or removed when ``value`` is :data:`GONE`."""
    s = statement()
    *parents, last = path.split(".")
    node = s
    for key in parents:
        if key.endswith("]"):
            name, index = key[:-1].split("[")
            node = node[name][int(index)]
        else:
            node = node.setdefault(key, {})
    if value is GONE:
        del node[last]
    else:
        node[last] = value
    return s


GONE = object()


def substatement(**inner) -> dict:
    sub = {
        "objectType": "SubStatement",
        "actor": agent(),
        "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
        "object": {"objectType": "Activity", "id": f"https://lms.example.org/quiz/{uid()}"},
        **inner,
    }
    return statement(object={k: v for k, v in sub.items() if v is not GONE})


def count(lrs) -> int:
    return lrs.app.store.count(Statement)


async def post(lrs, body, **kw) -> httpx.Response:
    return await lrs.post("/statements", json=body, **kw)


async def read(lrs, sid: str, **params) -> dict:
    r = await lrs.get("/statements", params={"statementId": sid, **params})
    assert r.status_code == 200, r.text
    return r.json()


async def query(lrs, **params) -> dict:
    r = await lrs.get("/statements", params=params)
    assert r.status_code == 200, r.text
    return r.json()


# --------------------------------------------------------------------------- invalid statements

_TWO = [agent(), agent()]
_LANG_BAD = {"not a tag!": "x"}


def _interaction(**definition) -> dict:
    return changed(
        "object.definition",
        {"type": "http://adlnet.gov/expapi/activities/cmi.interaction", **definition},
    )


def _file_attachment(**change) -> dict:
    att = {
        "usageType": "https://example.org/usage/essay",
        "display": {"en-US": "an essay"},
        "contentType": "text/plain",
        "length": 12,
        "sha2": "a" * 64,
        "fileUrl": "https://example.org/files/essay.txt",
        **change,
    }
    return statement(attachments=[{k: v for k, v in att.items() if v is not GONE}])


INVALID = {  # "XAPI-nnnnn what": (statement, the field the 400 names, or its start)
    "XAPI-00001 a property set to null": (changed("verb.display", None), "statement.verb.display"),
    "XAPI-00001 null inside a language map": (changed("verb.display", {"en-US": None}), "statement.verb.display"),
    "XAPI-00003 no actor": (statement(actor=None), "statement"),
    "XAPI-00004 no verb": (statement(verb=None), "statement"),
    "XAPI-00005 no object": (statement(object=None), "statement"),
    "XAPI-00006 verb a string": (statement(verb="experienced"), "statement.verb"),
    "XAPI-00006 result.success a string": (changed("result.success", "true"), "statement.result.success"),
    "XAPI-00007 verb.id the empty string": (changed("verb.id", ""), "statement.verb.id"),
    "XAPI-00007 mbox the empty string": (changed("actor.mbox", ""), "statement.actor.mbox"),
    "XAPI-00008 a key in the wrong case (Actor)": (
        {**statement(actor=None), "Actor": agent()}, "statement"),
    "XAPI-00009 objectType in the wrong case (activity)": (
        changed("object.objectType", "activity"), "statement.object.objectType"),
    "XAPI-00010 a nested key in the wrong case (verb.ID)": (
        statement(verb={"ID": "http://adlnet.gov/expapi/verbs/experienced"}), "statement.verb"),
    "XAPI-00011 an IRI without a scheme": (changed("verb.id", "example.org/verbs/x"), "statement.verb.id"),
    "XAPI-00011 an IRL without a scheme": (
        changed("object.definition.moreInfo", "www.example.org/info"), "statement.object.definition.moreInfo"),
    "XAPI-00013 a language map key not RFC 5646": (changed("verb.display", _LANG_BAD), "statement.verb.display"),
    "XAPI-00017 a voiding statement with an Activity object": (
        statement(verb={"id": VOIDED}), "statement.object"),
    "XAPI-00020 a voiding statement's StatementRef without objectType": (
        statement(verb={"id": VOIDED}, object={"id": str(uuid.uuid4())}), "statement.object"),
    "XAPI-00022 timestamp not a timestamp": (statement(timestamp="yesterday"), "statement.timestamp"),
    "XAPI-00023 stored not a timestamp": (statement(stored="today"), "statement.stored"),
    "XAPI-00024 authority an Activity": (
        statement(authority={"objectType": "Activity", "id": "https://example.org/a"}), "statement.authority"),
    "XAPI-00024 authority an identified Group": (
        statement(authority={"objectType": "Group", "mbox": "mailto:g@example.org", "member": _TWO}),
        "statement.authority"),
    "XAPI-00025 attachments an object": (statement(attachments={}), "statement.attachments"),
    "XAPI-00027 id not a UUID": (statement(id="not-a-uuid"), "statement.id"),
    "XAPI-00028 id with braces": (statement(id="{" + str(uuid.uuid4()) + "}"), "statement.id"),
    "XAPI-00029 id without hyphens": (statement(id=uuid.uuid4().hex), "statement.id"),
    "XAPI-00030 registration not a UUID": (changed("context.registration", "reg-1"), "statement.context.registration"),
    "XAPI-00031 actor an Activity": (
        statement(actor={"objectType": "Activity", "id": "https://example.org/a"}), "statement.actor"),
    "XAPI-00032 objectType a number": (changed("actor.objectType", 5), "statement.actor.objectType"),
    "XAPI-00033 name a number": (changed("actor.name", 5), "statement.actor.name"),
    "XAPI-00034 an Agent without identifier": (statement(actor={"objectType": "Agent", "name": "Ada"}), "statement.actor"),
    "XAPI-00034 an Agent with two identifiers": (
        statement(actor={**agent(), "openid": "https://id.example.org/ada"}), "statement.actor"),
    "XAPI-00035 an anonymous Group without member": (statement(actor={"objectType": "Group"}), "statement.actor"),
    "XAPI-00036 member not a list": (
        statement(actor={"objectType": "Group", "member": agent()}), "statement.actor.member"),
    "XAPI-00036 a member that is a Group": (
        statement(actor={"objectType": "Group", "member": [{"objectType": "Group", "member": _TWO}]}),
        "statement.actor.member[0]"),
    "XAPI-00037 a Group with two identifiers": (
        statement(actor={"objectType": "Group", "mbox": "mailto:g@example.org",
                         "openid": "https://id.example.org/g"}), "statement.actor"),
    "XAPI-00038 mbox without mailto:": (changed("actor.mbox", "ada@example.org"), "statement.actor.mbox"),
    "XAPI-00039 mbox_sha1sum a number": (
        statement(actor={"objectType": "Agent", "mbox_sha1sum": 5}), "statement.actor.mbox_sha1sum"),
    "XAPI-00040 openid not a URI": (
        statement(actor={"objectType": "Agent", "openid": "not a uri"}), "statement.actor.openid"),
    "XAPI-00041 account not an object": (
        statement(actor={"objectType": "Agent", "account": "ada"}), "statement.actor.account"),
    "XAPI-00042 account without homePage": (
        statement(actor={"objectType": "Agent", "account": {"name": "ada"}}), "statement.actor.account"),
    "XAPI-00042 account homePage not an IRL": (
        statement(actor={"objectType": "Agent", "account": {"homePage": "lms", "name": "ada"}}),
        "statement.actor.account.homePage"),
    "XAPI-00043 account without name": (
        statement(actor={"objectType": "Agent", "account": {"homePage": "https://lms.example.org"}}),
        "statement.actor.account"),
    "XAPI-00044 verb without id": (statement(verb={"display": {"en-US": "did"}}), "statement.verb"),
    "XAPI-00045 verb display a string": (changed("verb.display", "did"), "statement.verb.display"),
    "XAPI-00046 object of an unknown objectType": (changed("object.objectType", "Thing"), "statement.object.objectType"),
    "XAPI-00047 an Activity without id": (changed("object.id", GONE), "statement.object"),
    "XAPI-00047 an Activity id not an IRI": (changed("object.id", "activity 1"), "statement.object.id"),
    "XAPI-00048 definition a string": (changed("object.definition", "a lesson"), "statement.object.definition"),
    "XAPI-00049 interactionType not in the vocabulary": (
        _interaction(interactionType="essay"), "statement.object.definition.interactionType"),
    "XAPI-00049 interactionType in the wrong case": (
        _interaction(interactionType="Choice"), "statement.object.definition.interactionType"),
    "XAPI-00049 interactionType a number": (
        _interaction(interactionType=5), "statement.object.definition.interactionType"),
    "XAPI-00049 interactionType an object": (
        _interaction(interactionType={"x": 1}), "statement.object.definition.interactionType"),
    "XAPI-00049 interactionType an IRI": (
        _interaction(interactionType="http://example.org/choice"), "statement.object.definition.interactionType"),
    "XAPI-00056 definition name a string": (changed("object.definition.name", "Week 1"), "statement.object.definition.name"),
    "XAPI-00057 definition extensions a list": (
        changed("object.definition.extensions", []), "statement.object.definition.extensions"),
    "XAPI-00059 definition description a string": (
        changed("object.definition.description", "about"), "statement.object.definition.description"),
    "XAPI-00060 definition type not an IRI": (changed("object.definition.type", "lesson"), "statement.object.definition.type"),
    "XAPI-00061 definition moreInfo not an IRL": (
        changed("object.definition.moreInfo", "urn:no:place"), "statement.object.definition.moreInfo"),
    "XAPI-00064 choices without interactionType": (
        _interaction(choices=[{"id": "a", "description": {"en-US": "A"}}]), "statement.object.definition.choices"),
    "XAPI-00064 steps without interactionType": (
        _interaction(steps=[{"id": "a"}]), "statement.object.definition.steps"),
    "XAPI-00065 an Agent object without objectType": (statement(object={"mbox": "mailto:b@example.org"}), "statement.object"),
    "XAPI-00066 a SubStatement without verb": (substatement(verb=GONE), "statement.object"),
    "XAPI-00067 a SubStatement with authority": (substatement(authority=agent()), "statement.object"),
    "XAPI-00068 a SubStatement with version": (substatement(version="1.0.3"), "statement.object"),
    "XAPI-00069 a SubStatement with stored": (substatement(stored="2026-09-14T10:15:00Z"), "statement.object"),
    "XAPI-00070 a SubStatement with id": (substatement(id=str(uuid.uuid4())), "statement.object"),
    "XAPI-00071 a SubStatement in a SubStatement": (
        substatement(object={"objectType": "SubStatement", "actor": agent(), "verb": {"id": "http://x.org/v"},
                             "object": {"id": "https://example.org/a"}}), "statement.object.object"),
    "XAPI-00072 a StatementRef without id": (statement(object={"objectType": "StatementRef"}), "statement.object"),
    "XAPI-00073 a StatementRef id not a UUID": (
        statement(object={"objectType": "StatementRef", "id": "https://example.org/s/1"}), "statement.object.id"),
    "XAPI-00074 success a string": (changed("result.success", "yes"), "statement.result.success"),
    "XAPI-00075 completion a number": (changed("result.completion", 1), "statement.result.completion"),
    "XAPI-00076 response a number": (changed("result.response", 5), "statement.result.response"),
    "XAPI-00077 duration not ISO 8601": (changed("result.duration", "4 minutes"), "statement.result.duration"),
    "XAPI-00078 result extensions a string": (changed("result.extensions", "x"), "statement.result.extensions"),
    "XAPI-00079 score a number": (changed("result.score", 7), "statement.result.score"),
    "XAPI-00080 score max a string": (changed("result.score", {"max": "10"}), "statement.result.score.max"),
    "XAPI-00081 score min above max": (changed("result.score", {"min": 10, "max": 5}), "statement.result.score"),
    "XAPI-00082 score raw above max": (changed("result.score", {"raw": 11, "min": 0, "max": 10}), "statement.result.score"),
    "XAPI-00082 score raw below min": (changed("result.score", {"raw": -1, "min": 0, "max": 10}), "statement.result.score"),
    "XAPI-00083 score scaled above 1": (changed("result.score", {"scaled": 1.5}), "statement.result.score.scaled"),
    "XAPI-00083 score scaled below -1": (changed("result.score", {"scaled": -1.01}), "statement.result.score.scaled"),
    "XAPI-00084 context.revision with an Agent object": (
        statement(object=agent(), context={"revision": "2"}), "statement.context.revision"),
    "XAPI-00085 context.platform with a StatementRef object": (
        statement(object={"objectType": "StatementRef", "id": str(uuid.uuid4())}, context={"platform": "Moodle"}),
        "statement.context.platform"),
    "XAPI-00086 contextActivities a list": (changed("context.contextActivities", []), "statement.context.contextActivities"),
    "XAPI-00087 instructor an Activity": (
        changed("context.instructor", {"objectType": "Activity", "id": "https://example.org/a"}), "statement.context.instructor"),
    "XAPI-00088 team an Agent": (changed("context.team", agent()), "statement.context.team"),
    "XAPI-00089 revision a number": (changed("context.revision", 2), "statement.context.revision"),
    "XAPI-00090 platform a number": (changed("context.platform", 2), "statement.context.platform"),
    "XAPI-00091 language a number": (changed("context.language", 2), "statement.context.language"),
    "XAPI-00091 language not a language tag": (changed("context.language", "not a tag!"), "statement.context.language"),
    "XAPI-00092 context.statement an Activity": (
        changed("context.statement", {"objectType": "Activity", "id": "https://example.org/a"}), "statement.context.statement"),
    "XAPI-00093 a contextActivities key not in the vocabulary": (
        changed("context.contextActivities.parents", [{"id": "https://example.org/p"}]), "statement.context.contextActivities"),
    "XAPI-00094 a context activity that is an Agent": (
        changed("context.contextActivities.parent", [agent()]), "statement.context.contextActivities.parent[0]"),
    "XAPI-00094 a context activity whose objectType is GroupActivity": (
        changed("context.contextActivities.parent", [{"objectType": "GroupActivity", "id": "https://example.org/p"}]),
        "statement.context.contextActivities.parent[0].objectType"),
    "XAPI-00098 authority a Group of three": (
        statement(authority={"objectType": "Group", "member": [*_TWO, agent()]}), "statement.authority.member"),
    "XAPI-00100 authority a Group of one": (
        statement(authority={"objectType": "Group", "member": _TWO[:1]}), "statement.authority.member"),
    "XAPI-00101 version 2.0.0": (statement(version="2.0.0"), "statement.version"),
    "XAPI-00101 version 1.1": (statement(version="1.1"), "statement.version"),
    "XAPI-00101 version 0.95": (statement(version="0.95"), "statement.version"),
    "XAPI-00102 attachment length a string": (_file_attachment(length="12"), "statement.attachments[0].length"),
    "XAPI-00102 attachment length fractional": (_file_attachment(length=1.5), "statement.attachments[0].length"),
    "XAPI-00103 attachment sha2 a number": (_file_attachment(sha2=123), "statement.attachments[0].sha2"),
    "XAPI-00104 attachment fileUrl not an IRL": (_file_attachment(fileUrl="essay.txt"), "statement.attachments[0].fileUrl"),
    "XAPI-00105 attachment contentType not a media type": (
        _file_attachment(contentType="plain text"), "statement.attachments[0].contentType"),
    "XAPI-00106 attachment display a number": (_file_attachment(display=123), "statement.attachments[0].display"),
    "XAPI-00107 attachment usageType not an IRI": (_file_attachment(usageType="essay"), "statement.attachments[0].usageType"),
    "XAPI-00107 attachment without usageType": (_file_attachment(usageType=GONE), "statement.attachments[0]"),
    "XAPI-00118 an extension key not an IRI": (
        changed("result.extensions", {"clicks": 3}), "statement.result.extensions"),
    "XAPI-00118 a context extension key not an IRI": (
        changed("context.extensions", {"": 3}), "statement.context.extensions"),
    "XAPI-00120 extensions a list of pairs": (
        changed("context.extensions", [["https://example.org/x", 1]]), "statement.context.extensions"),
    "XAPI-00121 a definition name key not RFC 5646": (
        changed("object.definition.name", {"english-language-tag": "x"}), "statement.object.definition.name"),
    "XAPI-00123 timestamp month 13": (statement(timestamp="2026-13-01T10:00:00Z"), "statement.timestamp"),
    "XAPI-00123 timestamp without time": (statement(timestamp="2026-09-14"), "statement.timestamp"),
    "XAPI-00124 duration with weeks and days": (changed("result.duration", "P4W1D"), "statement.result.duration"),
    "XAPI-00124 duration without P": (changed("result.duration", "T4M"), "statement.result.duration"),
    "XAPI-00124 duration with T and no time": (changed("result.duration", "P1DT"), "statement.result.duration"),
}  # fmt: skip


@pytest.mark.parametrize("what", sorted(INVALID))
async def test_an_invalid_statement_is_refused(lms, what):
    """Each statement the specification calls invalid (Data 2 and 4; the XAPI number leads
    the case's id) is refused with 400 naming the field, alone and in a batch with a valid
    one (XAPI-00326: nothing of that batch is stored either).

    Readings: XAPI-00001 allows null only as an extension's value (see :data:`VALID`);
    XAPI-00008/-00010 take a key in another case as an unknown key; a StatementRef's
    ``objectType`` is required (XAPI-00020, -00073), an Activity's is optional; XAPI-00105
    takes a media type to be ``type/subtype``; a Group as ``authority`` is an OAuth consumer
    and its user (exactly two members, no identifier: XAPI-00024, -00098, -00100)."""
    lrs = lms["ds101"]
    bad, field = INVALID[what]
    before = count(lrs)
    body = assert_error(await post(lrs, bad), 400, "bad_request")
    assert body.get("field", "").startswith(field), body
    good = statement()
    body = assert_error(await post(lrs, [good, bad]), 400, "bad_request")
    assert body["statement"] == 1 and body["field"].startswith(
        field.replace("statement", "statements[1]", 1)
    )
    assert count(lrs) == before
    assert (await lrs.get("/statements", params={"statementId": good["id"]})).status_code == 404


# --------------------------------------------------------------------------- valid statements

_INTERACTIONS = {
    "true-false": {"correctResponsesPattern": ["true"]},
    "choice": {"choices": [{"id": "a", "description": {"en-US": "A"}}], "correctResponsesPattern": ["a"]},
    "fill-in": {"correctResponsesPattern": ["Bob"]},
    "long-fill-in": {"correctResponsesPattern": ["{case_matters=false}{lang=en}To be"]},
    "matching": {"source": [{"id": "a"}], "target": [{"id": "1"}], "correctResponsesPattern": ["a[.]1"]},
    "performance": {"steps": [{"id": "pong"}], "correctResponsesPattern": ["pong[.]1:[,]"]},
    "sequencing": {"choices": [{"id": "a"}, {"id": "b"}], "correctResponsesPattern": ["a[,]b"]},
    "likert": {"scale": [{"id": "likert_0"}], "correctResponsesPattern": ["likert_0"]},
    "numeric": {"correctResponsesPattern": ["4[:]"]},
    "other": {},
}  # fmt: skip

VALID = {  # "XAPI-nnnnn what": statement
    "XAPI-00001 null as an extension's value": changed("result.extensions", {"https://example.org/x": None}),
    "XAPI-00119 an extension's value the empty string": changed("context.extensions", {"https://example.org/x": ""}),
    "XAPI-00119 an extension's value an empty object": changed("context.extensions", {"https://example.org/x": {}}),
    "XAPI-00120 extensions an empty object": changed("object.definition.extensions", {}),
    "XAPI-00034 an Agent by mbox_sha1sum": statement(
        actor={"objectType": "Agent", "mbox_sha1sum": hashlib.sha1(b"mailto:x@example.org").hexdigest()}),
    "XAPI-00034 an Agent by openid": statement(actor={"objectType": "Agent", "openid": "https://id.example.org/ada"}),
    "XAPI-00034 an Agent by account": statement(
        actor={"objectType": "Agent", "account": {"homePage": "https://lms.example.org", "name": "ada"}}),
    "XAPI-00034 an actor without objectType (an Agent)": statement(actor={"mbox": "mailto:plain@example.org"}),
    "XAPI-00035 an anonymous Group with members": statement(actor={"objectType": "Group", "member": _TWO}),
    "XAPI-00037 an identified Group without members": statement(
        actor={"objectType": "Group", "account": {"homePage": "https://lms.example.org", "name": "team-a"}}),
    **{f"XAPI-00049 interactionType {kind}": _interaction(interactionType=kind, **more)
       for kind, more in _INTERACTIONS.items()},
    "XAPI-00065 an Agent object with objectType": statement(object=agent()),
    "XAPI-00066 a SubStatement": substatement(),
    "XAPI-00073 a StatementRef object": statement(object={"objectType": "StatementRef", "id": str(uuid.uuid4())}),
    "XAPI-00092 context.statement a StatementRef": changed(
        "context.statement", {"objectType": "StatementRef", "id": str(uuid.uuid4())}),
    "XAPI-00094 a single context activity, not in a list": changed(
        "context.contextActivities.parent", {"id": "https://example.org/parent"}),
    "XAPI-00097 with stored": statement(stored="2020-01-01T00:00:00Z"),
    "XAPI-00099 with an authority (the LRS's own replaces it)": statement(authority=agent()),
    "XAPI-00101 version 1.0": statement(version="1.0"),
    "XAPI-00101 version 1.0.0": statement(version="1.0.0"),
    "XAPI-00101 version 1.0.9": statement(version="1.0.9"),
    "XAPI-00121 language tags of RFC 5646": changed("verb.display", {"zh-Hant-TW": "x", "sr-Latn-RS": "y", "en": "z"}),
    "XAPI-00123 timestamp without a zone": statement(timestamp="2026-09-14T10:15:00"),
    "XAPI-00123 timestamp with an offset": statement(timestamp="2026-09-14T10:15:00.5+05:30"),
    "XAPI-00124 duration in weeks": changed("result.duration", "P2W"),
    "XAPI-00124 duration of every unit": changed("result.duration", "P1Y2M3DT4H5M6.7S"),
    "XAPI-00124 duration in fractional seconds": changed("result.duration", "PT0.25S"),
    "XAPI-00081 score min equal to max": changed("result.score", {"raw": 5, "min": 5, "max": 5}),
    "XAPI-00083 score scaled at -1": changed("result.score", {"scaled": -1}),
}  # fmt: skip


@pytest.mark.parametrize("what", sorted(VALID))
async def test_a_valid_statement_is_accepted(lms, what):
    """Statements the specification allows (the neighbours of :data:`INVALID`'s cases) are
    stored (200 and their id) and read back by id."""
    lrs = lms["ds101"]
    good = copy.deepcopy(VALID[what])
    r = await post(lrs, good)
    assert r.status_code == 200, r.text
    assert r.json() == [good["id"]]
    back = await read(lrs, good["id"])
    assert back["actor"] == good["actor"] and back["verb"] == good["verb"]


# --------------------------------------------------------------------------- Data 2: statements


async def test_xapi_00002_numbers_keep_their_precision(lms):
    """XAPI-00002: a score's numbers come back as sent (IEEE 754 doubles: more than 32-bit)."""
    lrs = lms["ds101"]
    s = changed(
        "result.score",
        {"scaled": 0.1234567, "raw": 1.0000001, "min": -3.4028235e38, "max": 3.4028235e38},
    )
    assert (await post(lrs, s)).status_code == 200
    assert (await read(lrs, s["id"]))["result"]["score"] == s["result"]["score"]


async def test_xapi_00014_a_body_that_is_not_json_is_refused(lms):
    """XAPI-00014: the body is a JSON object or array; one that is not JSON is a 400."""
    lrs = lms["ds101"]
    r = await lrs.post(
        "/statements", content=b'{"actor": ', headers={"Content-Type": "application/json"}
    )
    assert "not JSON" in assert_error(r, 400, "bad_request")["message"]


async def test_xapi_00015_strings_are_utf8(lms):
    """XAPI-00015: strings are UTF-8 both ways (a name outside Latin-1 is read back as sent);
    a body that is not UTF-8 is refused."""
    lrs = lms["ds101"]
    s = changed("verb.display", {"ja": "体験した", "el": "βίωσε"})
    body = json.dumps(s, ensure_ascii=False).encode("utf-8")
    r = await lrs.post("/statements", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert (await read(lrs, s["id"]))["verb"]["display"] == s["verb"]["display"]
    latin1 = json.dumps(changed("verb.display", {"fr": "vécu"}), ensure_ascii=False).encode(
        "latin-1"
    )
    assert_error(await lrs.post("/statements", content=latin1), 400, "bad_request")


async def test_xapi_00016_a_voiding_statement_cannot_be_voided(lms):
    """XAPI-00016: a statement voiding a voiding statement is stored (ADL's reading: the
    request is not refused), but the voiding statement it targets stays as it was."""
    lrs = lms["ds101"]
    target = statement()
    voiding = statement(
        verb={"id": VOIDED}, object={"objectType": "StatementRef", "id": target["id"]}
    )
    again = statement(
        verb={"id": VOIDED}, object={"objectType": "StatementRef", "id": voiding["id"]}
    )
    for s in (target, voiding, again):
        assert (await post(lrs, s)).status_code == 200
    assert (await read(lrs, voiding["id"]))["id"] == voiding["id"]
    assert (await lrs.get("/statements", params={"statementId": target["id"]})).status_code == 404


async def test_xapi_00018_00019_a_voided_statement(lms):
    """XAPI-00018, -00019: a statement targeted by a voiding statement (verb ``.../voided``)
    is voided: 404 by ``statementId``, read by ``voidedStatementId`` (XAPI-00155, -00157),
    absent from queries (XAPI-00163), while the voiding statement is returned."""
    lrs = lms["ds101"]
    target = statement()
    voiding = statement(
        verb={"id": VOIDED}, object={"objectType": "StatementRef", "id": target["id"]}
    )
    assert (await post(lrs, target)).status_code == 200
    assert (await post(lrs, voiding)).status_code == 200
    assert_error(
        await lrs.get("/statements", params={"statementId": target["id"]}), 404, "not_found"
    )
    r = await lrs.get("/statements", params={"voidedStatementId": target["id"]})
    assert r.status_code == 200 and r.json()["id"] == target["id"]
    found = await query(lrs, agent=json.dumps(target["actor"]))
    assert [s["id"] for s in found["statements"]] == []
    assert_error(
        await lrs.get("/statements", params={"voidedStatementId": voiding["id"]}), 404, "not_found"
    )


async def test_xapi_00026_an_id_is_generated(lms):
    """XAPI-00026: a statement without id gets one (a UUID, answered and stored)."""
    lrs = lms["ds101"]
    r = await post(lrs, statement(id=None))
    [sid] = r.json()
    assert uuid.UUID(sid) and (await read(lrs, sid))["id"] == sid


async def test_xapi_00096_context_activities_come_back_as_lists(lms):
    """XAPI-00096: a single context activity sent as an object is returned in a list."""
    lrs = lms["ds101"]
    s = changed("context.contextActivities.category", {"id": "https://example.org/category"})
    assert (await post(lrs, s)).status_code == 200
    ca = (await read(lrs, s["id"]))["context"]["contextActivities"]
    assert ca["category"] == [{"id": "https://example.org/category"}] and isinstance(
        ca["grouping"], list
    )


async def test_xapi_00097_00023_stored_is_the_lrs_own_timestamp(lms):
    """XAPI-00097: a statement with ``stored`` is accepted; XAPI-00023: ``stored`` (set by the
    LRS, replacing the one sent) is a timestamp, and not in the past of the request."""
    lrs = lms["ds101"]
    s = statement(stored="2001-01-01T00:00:00Z")
    before = datetime.now(UTC) - timedelta(seconds=1)
    assert (await post(lrs, s)).status_code == 200
    stored = (await read(lrs, s["id"]))["stored"]
    assert ISO.match(stored) and datetime.fromisoformat(stored) >= before


async def test_xapi_00099_the_lrs_sets_the_authority(lms):
    """XAPI-00099: the authority is the Agent of the credentials (the source), whatever the
    statement said (a source cannot speak for another)."""
    ds101, stat200 = lms["ds101"], lms["stat200"]
    s = statement(authority=agent())
    assert (await post(ds101, s)).status_code == 200
    authority = (await read(ds101, s["id"]))["authority"]
    assert authority["objectType"] == "Agent" and authority["name"] == "lms-ds101"
    other = statement(context={})
    assert (await post(stat200, other)).status_code == 200
    assert (await read(stat200, other["id"]))["authority"] != authority


async def test_xapi_00115_to_00117_signed_statements(lms):
    """XAPI-00115: a signed statement carries a JWS attachment (``usageType`` signature);
    XAPI-00116: its payload is the statement (one that is not is refused); XAPI-00117: the
    algorithm is RS256, RS384 or RS512 (HS256 is refused)."""
    import jwt

    lrs = lms["ds101"]
    key, x5c = signer()
    for algorithm in ("RS256", "RS384", "RS512"):
        s, (body, headers) = signed(statement(), key, x5c, algorithm=algorithm)
        r = await lrs.post("/statements", content=body, headers=headers)
        assert r.status_code == 200, (algorithm, r.text)
    s, (body, headers) = signed(statement(), key, x5c, payload=statement())
    assert (
        "payload"
        in assert_error(
            await lrs.post("/statements", content=body, headers=headers), 400, "bad_request"
        )["message"]
    )
    s = statement()
    token = jwt.encode(s, "a shared secret, 32 bytes or more", algorithm="HS256").encode()
    s["attachments"] = [
        attachment(
            token, "application/octet-stream", "http://adlnet.gov/expapi/attachments/signature"
        )
    ]
    body, headers = multipart([s], [(token, part_headers(token, "application/octet-stream"))])
    assert_error(await lrs.post("/statements", content=body, headers=headers), 400, "bad_request")


async def test_xapi_00122_timestamps_keep_milliseconds(lms):
    """XAPI-00122: a timestamp keeps at least its milliseconds."""
    lrs = lms["ds101"]
    s = statement(timestamp="2026-09-14T10:15:00.123Z")
    assert (await post(lrs, s)).status_code == 200
    back = datetime.fromisoformat((await read(lrs, s["id"]))["timestamp"])
    assert back == datetime(2026, 9, 14, 10, 15, 0, 123000, tzinfo=UTC)


async def test_xapi_00330_00332_the_version_is_kept(lms):
    """XAPI-00332: a statement is returned with the ``version`` it was accepted with;
    XAPI-00330: a statement of version 1.0.0 is not rewritten (its actor, verb, object come
    back as sent). Without ``version`` the LRS gives it 1.0.0, the data model's (Data
    2.4.10: "If they lack a version, the version MUST be set to 1.0.0"), not the API's 1.0.3."""
    lrs = lms["ds101"]
    for version in ("1.0.0", "1.0.3", "1.0"):
        s = statement(version=version)
        assert (await post(lrs, s)).status_code == 200
        back = await read(lrs, s["id"])
        assert back["version"] == version
        assert (back["actor"], back["verb"], back["object"]) == (s["actor"], s["verb"], s["object"])
    s = statement()
    assert (await post(lrs, s)).status_code == 200
    assert (await read(lrs, s["id"]))["version"] == "1.0.0"


# --------------------------------------------------------------------------- Communication 1


def credentials(lrs) -> str:
    """The source's ``Authorization`` header (to go in a form instead)."""
    return next(lrs.auth.auth_flow(lrs.build_request("GET", "/about"))).headers["Authorization"]


async def alternate(lrs, path: str, method: str, **fields) -> httpx.Response:
    """A request in the alternate syntax (Communication 1.3): POST ?method=, a form body."""
    form = {"Authorization": credentials(lrs), "X-Experience-API-Version": "1.0.3", **fields}
    return await lrs.post(
        f"{path}?method={method}",
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Experience-API-Version": "",
        },
        auth=None,
    )


def an_activity() -> str:
    return f"https://lms.example.org/activity/{uid()}"


def documents() -> dict[str, dict]:
    """Fresh parameters of one document of each resource, and where their ids list."""
    act, who = an_activity(), json.dumps(agent())
    return {
        "/activities/state": {"activityId": act, "agent": who, "stateId": "bookmark"},
        "/activities/profile": {"activityId": act, "profileId": "syllabus"},
        "/agents/profile": {"agent": who, "profileId": "preferences"},
    }


async def test_xapi_00125_00126_head_is_get_without_a_body(lms):
    """XAPI-00126: every resource takes HEAD; XAPI-00125: with GET's status and headers and
    no body (statements by id and by query, each document resource, activities, agents,
    about)."""
    lrs = lms["ds101"]
    s = statement()
    assert (await post(lrs, s)).status_code == 200
    docs = documents()
    for path, params in docs.items():
        assert (await lrs.put(path, params=params, json={"a": 1})).status_code == 204
    cases = [
        ("/statements", {"statementId": s["id"]}),
        ("/statements", {"verb": s["verb"]["id"], "limit": "1"}),
        *docs.items(),
        ("/activities", {"activityId": s["object"]["id"]}),
        ("/agents", {"agent": json.dumps(s["actor"])}),
        ("/about", {}),
    ]
    for path, params in cases:
        get, head = await lrs.get(path, params=params), await lrs.head(path, params=params)
        assert head.status_code == get.status_code == 200, (path, get.text)
        assert head.content == b"", path
        assert head.headers["Content-Type"] == get.headers["Content-Type"], path
        if path in docs:  # a document's ETag (the statements' would be tornado's own)
            assert head.headers["ETag"] == get.headers["ETag"], path


async def test_xapi_00148_00336_the_alternate_request_syntax(lms):
    """XAPI-00336: POST ?method=PUT with the headers, parameters and content as form fields
    stores the statement; XAPI-00148: ?method=GET answers the StatementResult; the document
    resources take it too."""
    lrs = lms["ds101"]
    s = statement()
    sid = s.pop("id")
    r = await alternate(lrs, "/statements", "PUT", statementId=sid, content=json.dumps(s),
                        **{"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 204, r.text
    r = await alternate(
        lrs, "/statements", "GET", verb=s["verb"]["id"], agent=json.dumps(s["actor"])
    )
    assert r.status_code == 200 and [x["id"] for x in r.json()["statements"]] == [sid]
    params = documents()["/activities/profile"]
    r = await alternate(lrs, "/activities/profile", "PUT", content='{"x": 1}', **params,
                        **{"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 204, r.text
    assert (await lrs.get("/activities/profile", params=params)).json() == {"x": 1}


async def test_xapi_00127_attachments_need_json_or_multipart(lms):
    """XAPI-00127: a statement with attachments comes as application/json (each with a
    ``fileUrl``) or multipart/mixed; another Content-Type is refused. Reading: the rule is
    for requests that use attachments, as the requirement says; a statement without any is
    read as JSON whatever its Content-Type (LMS plugins send no or odd types)."""
    lrs = lms["ds101"]
    s = _file_attachment()
    r = await lrs.post("/statements", content=json.dumps(s), headers={"Content-Type": "text/plain"})
    assert_error(r, 400, "bad_request")
    assert (await lrs.post("/statements", json=s)).status_code == 200


def _multipart_case(case: str) -> tuple[bytes, dict]:
    data = b"an essay " + uuid.uuid4().bytes
    s = statement(attachments=[attachment(data)])
    headers = part_headers(data)
    parts = [(data, headers)]
    if case == "no-hash":
        del headers["X-Experience-API-Hash"]
    elif case == "no-encoding":
        del headers["Content-Transfer-Encoding"]
    elif case == "extra-part":
        parts.append((b"extra", part_headers(b"extra")))
    elif case == "missing-part":
        parts = []
    body, content_type = multipart([s], parts)
    if case == "no-boundary":
        content_type = {"Content-Type": "multipart/mixed"}
    elif case == "first-not-json":
        body = body.replace(b"Content-Type: application/json", b"Content-Type: text/plain", 1)
    elif case == "no-leading-boundary":
        body = body.split(b"\r\n", 1)[1]
    elif case == "statements-not-first":
        first, rest = body.split(b"--xapi-boundary-1\r\n", 2)[1:]
        body = b"--xapi-boundary-1\r\n" + rest.rsplit(b"--xapi-boundary-1--", 1)[0]
        body += b"--xapi-boundary-1\r\n" + first + b"--xapi-boundary-1--\r\n"
    return body, content_type


MULTIPART = {  # "XAPI-nnnnn what": the case of :func:`_multipart_case`
    "XAPI-00128 a part no attachment names": "extra-part",
    "XAPI-00129 an attachment whose part is missing": "missing-part",
    "XAPI-00130 no boundary before the first part": "no-leading-boundary",
    "XAPI-00131 no boundary parameter": "no-boundary",
    "XAPI-00132 a part without Content-Transfer-Encoding": "no-encoding",
    "XAPI-00133 the statements not in the first part": "statements-not-first",
    "XAPI-00134 the first part not application/json": "first-not-json",
    "XAPI-00135 a part without X-Experience-API-Hash": "no-hash",
}


@pytest.mark.parametrize("what", sorted(MULTIPART))
async def test_a_malformed_multipart_request_is_refused(lms, what):
    """Communication 1.5.2: a multipart/mixed request that breaks one of its rules gets 400
    with the reason, and nothing is stored. Reading of XAPI-00132: a part must say
    ``Content-Transfer-Encoding: binary`` (the specification's "MUST include")."""
    lrs = lms["ds101"]
    before = count(lrs)
    body, headers = _multipart_case(MULTIPART[what])
    assert_error(await lrs.post("/statements", content=body, headers=headers), 400, "bad_request")
    assert count(lrs) == before


async def test_a_multipart_statement_and_its_attachment_come_back(lms):
    """XAPI-00167, -00161 (the well-formed counterpart of :data:`MULTIPART`): the data is
    stored with the statement; GET with ``attachments=true`` answers multipart/mixed with it,
    without (or ``false``) plain JSON."""
    lrs = lms["ds101"]
    data = b"an essay " + uuid.uuid4().bytes
    s = statement(attachments=[attachment(data)])
    body, headers = multipart([s], [(data, part_headers(data))])
    assert (await lrs.post("/statements", content=body, headers=headers)).status_code == 200
    r = await lrs.get("/statements", params={"statementId": s["id"], "attachments": "true"})
    assert r.headers["Content-Type"].startswith("multipart/mixed")
    answered, parts = parse_answer(r)
    assert answered["id"] == s["id"] and list(parts.values()) == [data]
    for value in ("false", None):
        r = await lrs.get(
            "/statements",
            params={"statementId": s["id"], **({"attachments": value} if value else {})},
        )
        assert (
            r.headers["Content-Type"].startswith("application/json") and r.json()["id"] == s["id"]
        )


# --------------------------------------------------------------------------- Communication 2.1


async def test_xapi_00139_00147_00146_post_answers_the_ids(lms):
    """XAPI-00139: the Statement resource is base IRI + /statements; XAPI-00147: it takes
    POST; XAPI-00146: 200 and every statement's id, in order (given or made)."""
    lrs = lms["ds101"]
    batch = [statement(), statement(id=None), statement()]
    r = await post(lrs, batch)
    assert r.status_code == 200
    ids = r.json()
    assert ids[0] == batch[0]["id"] and ids[2] == batch[2]["id"] and uuid.UUID(ids[1])


async def test_xapi_00142_a_stored_id_is_not_changed(lms):
    """XAPI-00142: a statement with a stored id and other content is refused (409) and the
    stored one is unchanged; the same statement again is accepted (Communication 2.1.1)
    and nothing new is stored."""
    lrs = lms["ds101"]
    s = statement()
    assert (await post(lrs, s)).status_code == 200
    first = await read(lrs, s["id"])
    other = {**copy.deepcopy(s), "verb": {"id": "http://adlnet.gov/expapi/verbs/failed"}}
    assert assert_error(await post(lrs, other), 409, "conflict")["statement_id"] == s["id"]
    r = await lrs.put("/statements", params={"statementId": s["id"]}, json=other)
    assert_error(r, 409, "conflict")
    before = count(lrs)
    assert (await post(lrs, s)).status_code == 200
    assert count(lrs) == before and await read(lrs, s["id"]) == first


async def test_xapi_00143_00144_00145_put_needs_the_statement_id(lms):
    """XAPI-00143: PUT with ``statementId`` stores the statement, 204; XAPI-00144, -00145:
    PUT without it is refused (400), nothing stored."""
    lrs = lms["ds101"]
    s = statement()
    sid = s.pop("id")
    before = count(lrs)
    assert_error(await lrs.put("/statements", json=s), 400, "bad_request")
    assert count(lrs) == before
    r = await lrs.put("/statements", params={"statementId": sid}, json=s)
    assert r.status_code == 204 and r.content == b""
    assert (await read(lrs, sid))["id"] == sid


async def test_xapi_00149_an_empty_result_is_not_an_error(lms):
    """XAPI-00149: a query that matches nothing answers 200 with an empty list."""
    r = await query(lms["ds101"], verb=f"https://example.org/verbs/{uid()}")
    assert r == {"statements": [], "more": ""}


@pytest.mark.parametrize("key", ["statementId", "voidedStatementId"])
@pytest.mark.parametrize(
    "other",
    ["agent", "verb", "activity", "registration", "related_activities", "related_agents",
     "since", "until", "limit", "ascending"],
)  # fmt: skip
async def test_xapi_00150_00151_a_statement_id_takes_only_format_and_attachments(lms, key, other):
    """XAPI-00151 (statementId), XAPI-00150 (voidedStatementId): with any parameter but
    ``format`` and ``attachments``, 400 (which names it)."""
    values = {"agent": json.dumps(agent()), "verb": "http://x.org/v", "activity": "http://x.org/a",
              "registration": str(uuid.uuid4()), "related_activities": "false",
              "related_agents": "false", "since": "2020-01-01T00:00:00Z",
              "until": "2030-01-01T00:00:00Z", "limit": "1", "ascending": "true"}  # fmt: skip
    params = {key: str(uuid.uuid4()), other: values[other]}
    body = assert_error(await lms["ds101"].get("/statements", params=params), 400, "bad_request")
    assert other in body["message"]
    for fine in ({"format": "ids"}, {"attachments": "false"}):  # these are taken: a 404 then
        r = await lms["ds101"].get("/statements", params={key: params[key], **fine})
        assert_error(r, 404, "not_found")


async def test_xapi_00153_00160_consistent_through_on_every_answer(lms):
    """XAPI-00153: every statements GET answers X-Experience-API-Consistent-Through (200,
    400, 401, 404); XAPI-00160: an ISO 8601 date and time, with its zone."""
    lrs = lms["ds101"]
    answers = [
        await lrs.get("/statements"),
        await lrs.get("/statements", params={"limit": "x"}),
        await lrs.get("/statements", auth=None),
        await lrs.get("/statements", params={"statementId": str(uuid.uuid4())}),
    ]
    assert [r.status_code for r in answers] == [200, 400, 401, 404]
    for r in answers:
        moment = r.headers["X-Experience-API-Consistent-Through"]
        assert ISO.match(moment), moment
        assert datetime.fromisoformat(moment).tzinfo is not None


async def test_xapi_00154_to_00159_get_one_and_a_statement_result(lms):
    """XAPI-00159: GET; XAPI-00154: without an id, 200 and a StatementResult; XAPI-00156,
    -00158: with ``statementId``, 200 and that statement; XAPI-00165: with a Content-Type;
    XAPI-00110, -00113: ``statements`` a list, one ``more``."""
    lrs = lms["ds101"]
    s = statement()
    assert (await post(lrs, s)).status_code == 200
    r = await lrs.get("/statements", params={"statementId": s["id"]})
    assert r.status_code == 200 and r.json()["id"] == s["id"]
    assert r.headers["Content-Type"].startswith("application/json")
    r = await lrs.get("/statements")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    result = r.json()
    assert result.keys() == {"statements", "more"} and isinstance(result["statements"], list)


async def test_xapi_00162_a_filter_takes_in_statements_targeting_a_match(lms):
    """XAPI-00162: a query whose filters match a (voided) statement also returns the
    statements that target it by StatementRef (the voiding one excepted: it matches by its own
    properties only, Communication 2.1.4)."""
    lrs = lms["ds101"]
    target = statement(verb={"id": f"https://example.org/verbs/{uid()}"})
    ref = statement(object={"objectType": "StatementRef", "id": target["id"]})
    voiding = statement(
        verb={"id": VOIDED}, object={"objectType": "StatementRef", "id": target["id"]}
    )
    for s in (target, ref, voiding):
        assert (await post(lrs, s)).status_code == 200
    found = await query(lrs, verb=target["verb"]["id"])
    assert [s["id"] for s in found["statements"]] == [ref["id"]]


FILTERED = ("agent", "verb", "activity", "registration", "since", "until")


async def test_xapi_00164_and_each_filter(lms):
    """XAPI-00164: the statements answered match every filter; one test per parameter:
    XAPI-00181 agent (the actor, or the object: Communication 2.1.3), XAPI-00180 verb,
    XAPI-00179 activity (the object only), XAPI-00178 registration, XAPI-00175 since
    (exclusive), XAPI-00174 until (inclusive), XAPI-00173 limit, XAPI-00166 ascending."""
    lrs = lms["ds101"]
    ada, bob = agent(), agent()
    verb, reg, act = f"https://example.org/verbs/{uid()}", str(uuid.uuid4()), an_activity()
    made = [
        statement(actor=ada, verb={"id": verb}),
        statement(actor=bob, verb={"id": verb}, object={**statement()["object"], "id": act}),
        statement(actor=bob, verb={"id": verb}, object=ada, context={"registration": reg}),
        statement(actor=bob, verb={"id": verb}, context={"registration": reg,
                                                          "contextActivities": {"parent": [{"id": act}]}}),
    ]  # fmt: skip
    stored = []
    for s in made:
        assert (await post(lrs, s)).status_code == 200
        stored.append((await read(lrs, s["id"]))["stored"])
    ids = [s["id"] for s in made]

    async def found(**params) -> list[str]:
        return [
            s["id"] for s in (await query(lrs, verb=verb, ascending="true", **params))["statements"]
        ]

    assert await found() == ids
    assert await found(agent=json.dumps(ada)) == [ids[0], ids[2]]
    assert await found(activity=act) == [ids[1]]
    assert await found(registration=reg) == ids[2:]
    assert await found(since=stored[1]) == ids[2:]
    assert await found(until=stored[1]) == ids[:2]
    assert await found(limit="2") == ids[:2]
    assert [s["id"] for s in (await query(lrs, verb=verb))["statements"]] == ids[::-1]


async def test_xapi_00176_related_agents(lms):
    """XAPI-00176: ``related_agents=true`` matches the agent as actor, object, authority,
    instructor, team (or a team's member), or any of these in a SubStatement; ``false`` (the
    default) the actor or object only, a member of a Group actor or object included."""
    lrs = lms["ds101"]
    ada, verb = agent(), f"https://example.org/verbs/{uid()}"
    team = {"objectType": "Group", "member": [ada, agent()]}
    made = {
        "actor": statement(actor=ada),
        "object": statement(object=ada),
        "member of the actor": statement(actor={"objectType": "Group", "member": [agent(), ada]}),
        "instructor": changed("context.instructor", ada),
        "team member": changed("context.team", team),
        "SubStatement actor": substatement(actor=ada),
        "SubStatement object": substatement(object=ada),
        "SubStatement instructor": substatement(context={"instructor": ada}),
        "unrelated": statement(
            context={"instructor": agent(), **copy.deepcopy(statement()["context"])}
        ),
    }
    for s in made.values():
        s["verb"] = {"id": verb}
        assert (await post(lrs, s)).status_code == 200, s

    async def found(**params) -> set[str]:
        page = await query(lrs, verb=verb, agent=json.dumps(ada), **params)
        return {k for k, s in made.items() if s["id"] in {x["id"] for x in page["statements"]}}

    narrow = {"actor", "object", "member of the actor"}
    assert await found() == narrow
    assert await found(related_agents="false") == narrow
    assert await found(related_agents="true") == set(made) - {"unrelated"}


async def test_xapi_00176_related_agents_takes_in_the_authority(lms):
    """XAPI-00176: the authority (the source's Agent, set by the LRS) is a related agent:
    with ``related_agents=true`` it finds the source's statements; another course's source
    finds none of them (the course boundary holds)."""
    ds101, stat200 = lms["ds101"], lms["stat200"]
    s = statement(verb={"id": f"https://example.org/verbs/{uid()}"})
    assert (await post(ds101, s)).status_code == 200
    authority = (await read(ds101, s["id"]))["authority"]
    params = {"agent": json.dumps(authority), "verb": s["verb"]["id"]}
    assert [x["id"] for x in (await query(ds101, **params))["statements"]] == []
    assert [
        x["id"] for x in (await query(ds101, related_agents="true", **params))["statements"]
    ] == [s["id"]]
    assert (await query(stat200, related_agents="true", **params))["statements"] == []


async def test_xapi_00177_related_activities(lms):
    """XAPI-00177: ``related_activities=true`` matches the activity as the object, any
    context activity (parent, grouping, category, other), or either in a SubStatement;
    ``false`` the object only; another course's source sees none of them."""
    lrs = lms["ds101"]
    act, verb = an_activity(), f"https://example.org/verbs/{uid()}"
    course = copy.deepcopy(COURSE)
    made = {
        "object": statement(object={"objectType": "Activity", "id": act}),
        **{kind: changed(f"context.contextActivities.{kind}", [{"id": act}]) for kind in ("parent", "category", "other")},
        "grouping": statement(context={"contextActivities": {"grouping": [*course["grouping"], {"id": act}]}}),
        "SubStatement object": substatement(object={"objectType": "Activity", "id": act}),
        "SubStatement context": substatement(context={"contextActivities": {"parent": [{"id": act}]}}),
        "unrelated": statement(),
    }  # fmt: skip
    for s in made.values():
        s["verb"] = {"id": verb}
        assert (await post(lrs, s)).status_code == 200, s

    async def found(client=lrs, **params) -> set[str]:
        page = await query(client, verb=verb, activity=act, **params)
        return {k for k, s in made.items() if s["id"] in {x["id"] for x in page["statements"]}}

    assert await found() == {"object"}
    assert await found(related_activities="true") == set(made) - {"unrelated"}
    assert await found(lms["stat200"], related_activities="true") == set()


async def test_xapi_00177_related_activities_by_the_course_iri(lms):
    """XAPI-00177 for the course's own IRI (``urn:hub-ext:course:<id>``), which every hub
    and imported statement names in its context: a column of the statement says so (no
    side row each), and the filter reads it beside the side rows, which still hold the
    course's IRI for statements stored before the column (NULL there), and for a
    SubStatement's context. A statement of the course whose context does not name it is
    not related to it; another course's IRI finds none of ds101's."""
    lrs = lms["ds101"]
    iri, verb = "urn:hub-ext:course:ds101", f"https://example.org/verbs/{uid()}"
    made = {
        "grouping": statement(),
        "parent": statement(context={"contextActivities": {"parent": [{"id": iri}]}}),
        "object": statement(object={"objectType": "Activity", "id": iri}, context=None),
        "SubStatement context": substatement(context={"contextActivities": COURSE}),
        "no context": statement(context=None),
    }
    del made["SubStatement context"]["context"]  # the course named in the SubStatement only
    for s in made.values():
        s["verb"] = {"id": verb}
        r = await post(lrs, s)
        assert r.status_code == 200, r.text
    # stored before the column: NULL there, the course's IRI in a side row
    before = statement(verb={"id": verb})
    validate_statement(before)
    row = to_row(before, stored=datetime.now(UTC), source="lms", course_id="ds101")
    row["course_context"] = None
    lrs.app.store.store_statements([row])
    made["before the column"] = before

    async def found(client=lrs, activity=iri, **params) -> set[str]:
        page = await query(client, verb=verb, activity=activity, **params)
        return {k for k, s in made.items() if s["id"] in {x["id"] for x in page["statements"]}}

    assert await found() == {"object"}
    assert await found(related_activities="true") == set(made) - {"no context"}
    assert await found(activity="urn:hub-ext:course:stat200", related_activities="true") == set()
    assert await found(lms["stat200"], related_activities="true") == set()
    with lrs.app.store.engine.connect() as conn:
        flags = dict(
            conn.execute(
                select(Statement.id, Statement.course_context).where(Statement.verb == verb)
            ).all()
        )
    assert flags[made["grouping"]["id"]] is True and flags[made["no context"]["id"]] is False


async def test_related_filters_page_with_more(lms):
    """``related_activities`` and ``related_agents`` keep their meaning on the pages that
    ``more`` gives (XAPI-00108, with the related filters)."""
    lrs = lms["ds101"]
    act, verb = an_activity(), f"https://example.org/verbs/{uid()}"
    made = [changed("context.contextActivities.parent", [{"id": act}]) for _ in range(3)]
    for s in made:
        s["verb"] = {"id": verb}
        assert (await post(lrs, s)).status_code == 200
    page = await query(lrs, activity=act, related_activities="true", limit="2", ascending="true")
    seen = [s["id"] for s in page["statements"]]
    page = (await lrs.get(page["more"].removeprefix("/services/events/xAPI"))).json()
    seen += [s["id"] for s in page["statements"]]
    assert seen == [s["id"] for s in made] and page["more"] == ""


async def test_xapi_00163_a_voided_statement_is_only_read_by_its_id(lms):
    """XAPI-00163: a voided statement is answered only to ``voidedStatementId``: no filter
    returns it (its own verb, its activity, its agent)."""
    lrs = lms["ds101"]
    target = statement(verb={"id": f"https://example.org/verbs/{uid()}"})
    voiding = statement(
        verb={"id": VOIDED}, object={"objectType": "StatementRef", "id": target["id"]}
    )
    for s in (target, voiding):
        assert (await post(lrs, s)).status_code == 200
    for params in ({"verb": target["verb"]["id"]}, {"activity": target["object"]["id"]},
                   {"agent": json.dumps(target["actor"])}):  # fmt: skip
        assert target["id"] not in {s["id"] for s in (await query(lrs, **params))["statements"]}


async def test_xapi_00168_to_00172_formats(lms):
    """XAPI-00168 (format absent: exact), -00170 (exact: as stored), -00171 (ids: agents by
    their identifier only, activities and verbs by id), -00169 (canonical: one language per
    language map), -00172 (canonical chooses by Accept-Language)."""
    lrs = lms["ds101"]
    s = changed("verb.display", {"en-US": "experienced", "fr": "vécu"})
    s["object"]["definition"]["name"] = {"en-US": "Week 1", "fr": "Semaine 1"}
    assert (await post(lrs, s)).status_code == 200
    exact = await read(lrs, s["id"])
    assert await read(lrs, s["id"], format="exact") == exact
    assert exact["verb"] == s["verb"] and exact["object"] == s["object"]
    ids = await read(lrs, s["id"], format="ids")
    assert ids["actor"] == {"objectType": "Agent", "mbox": s["actor"]["mbox"]}
    assert ids["verb"] == {"id": s["verb"]["id"]}
    assert ids["object"] == {"objectType": "Activity", "id": s["object"]["id"]}
    r = await lrs.get("/statements", params={"statementId": s["id"], "format": "canonical"},
                      headers={"Accept-Language": "fr, en;q=0.5"})  # fmt: skip
    canonical = r.json()
    assert canonical["verb"]["display"] == {"fr": "vécu"}
    assert canonical["object"]["definition"]["name"] == {"fr": "Semaine 1"}
    r = await lrs.get("/statements", params={"statementId": s["id"], "format": "canonical"},
                      headers={"Accept-Language": "en-US"})  # fmt: skip
    assert r.json()["verb"]["display"] == {"en-US": "experienced"}
    assert_error(
        await lrs.get("/statements", params={"statementId": s["id"], "format": "full"}),
        400,
        "bad_request",
    )


async def test_xapi_00108_00109_00111_00114_more_pages(lms):
    """XAPI-00114: a result larger than a page continues in ``more``; XAPI-00108: an IRL of
    the next page of the same query; XAPI-00111: which answers a StatementResult too;
    XAPI-00109: the last page's ``more`` is the empty string."""
    lrs = lms["ds101"]
    verb = f"https://example.org/verbs/{uid()}"
    made = [statement(verb={"id": verb}) for _ in range(5)]
    assert (await post(lrs, made)).status_code == 200
    page = await query(lrs, verb=verb, limit="2", ascending="true")
    seen = [s["id"] for s in page["statements"]]
    while page["more"]:
        assert page["more"].startswith("/services/events/xAPI/statements?")
        r = await lrs.get(page["more"].removeprefix("/services/events/xAPI"))
        page = r.json()
        assert page.keys() == {"statements", "more"} and len(page["statements"]) <= 2
        seen += [s["id"] for s in page["statements"]]
    assert seen == [s["id"] for s in made] and page["more"] == ""


async def test_xapi_00182_00326_a_refused_batch_changes_nothing(lms):
    """XAPI-00326, -00182: a batch with one bad statement (here: the last; and one whose id
    is stored with other content) stores none, voids nothing it would have voided, and
    leaves no row of :mod:`~hub_ext.services.events.related`'s side tables."""
    lrs = lms["ds101"]
    target, stored = statement(), statement()
    assert (await post(lrs, [target, stored])).status_code == 200
    voiding = statement(
        verb={"id": VOIDED}, object={"objectType": "StatementRef", "id": target["id"]}
    )
    before = count(lrs)
    side = (lrs.app.store.count(StatementActivity), lrs.app.store.count(StatementAgent))
    assert_error(await post(lrs, [voiding, statement(), statement(verb="bad")]), 400, "bad_request")
    changed_copy = {
        **copy.deepcopy(stored),
        "verb": {"id": "http://adlnet.gov/expapi/verbs/failed"},
    }
    assert_error(await post(lrs, [voiding, changed_copy]), 409, "conflict")
    assert count(lrs) == before
    assert (lrs.app.store.count(StatementActivity), lrs.app.store.count(StatementAgent)) == side
    assert (await read(lrs, target["id"]))["id"] == target["id"]


# --------------------------------------------------------------------------- Communication 2.2-2.7

AGENT_BAD = json.dumps({"name": "no identifier"})
GROUP = json.dumps({"objectType": "Group", "mbox": "mailto:team@example.org"})

#: "XAPI-nnnnn what": (method, resource, the parameter to drop or None, bad values, body)
REFUSED_REQUESTS = {
    "XAPI-00012 a statements agent that is not an Agent": ("GET", "/statements", None, {"agent": AGENT_BAD}),
    "XAPI-00012 a statements since that is not a timestamp": ("GET", "/statements", None, {"since": "monday"}),
    "XAPI-00012 a statements registration that is not a UUID": ("GET", "/statements", None, {"registration": "r1"}),
    "XAPI-00012 related_agents that is not a boolean": ("GET", "/statements", None, {"related_agents": "yes"}),
    "XAPI-00012 ascending that is not a boolean": ("GET", "/statements", None, {"ascending": "1"}),
    "XAPI-00196 state DELETE agent not JSON": ("DELETE", "/activities/state", None, {"agent": "ada"}),
    "XAPI-00197 state GET agent not JSON": ("GET", "/activities/state", None, {"agent": "ada"}),
    "XAPI-00198 state POST agent not JSON": ("POST", "/activities/state", None, {"agent": "ada"}),
    "XAPI-00199 state PUT agent not JSON": ("PUT", "/activities/state", None, {"agent": "ada"}),
    "XAPI-00200 state DELETE registration not a UUID": ("DELETE", "/activities/state", None, {"registration": "r"}),
    "XAPI-00201 state GET registration not a UUID": ("GET", "/activities/state", None, {"registration": "r"}),
    "XAPI-00202 state POST registration not a UUID": ("POST", "/activities/state", None, {"registration": "r"}),
    "XAPI-00203 state PUT registration not a UUID": ("PUT", "/activities/state", None, {"registration": "r"}),
    "XAPI-00204 state GET since not a timestamp": ("GET", "/activities/state", "stateId", {"since": "monday"}),
    "XAPI-00206 state PUT without stateId": ("PUT", "/activities/state", "stateId", {}),
    "XAPI-00211 state POST without stateId": ("POST", "/activities/state", "stateId", {}),
    "XAPI-00207 state DELETE without activityId": ("DELETE", "/activities/state", "activityId", {}),
    "XAPI-00208 state GET without activityId": ("GET", "/activities/state", "activityId", {}),
    "XAPI-00209 state POST without activityId": ("POST", "/activities/state", "activityId", {}),
    "XAPI-00210 state PUT without activityId": ("PUT", "/activities/state", "activityId", {}),
    "XAPI-00212 state DELETE without agent": ("DELETE", "/activities/state", "agent", {}),
    "XAPI-00213 state GET without agent": ("GET", "/activities/state", "agent", {}),
    "XAPI-00214 state POST without agent": ("POST", "/activities/state", "agent", {}),
    "XAPI-00215 state PUT without agent": ("PUT", "/activities/state", "agent", {}),
    "XAPI-00255 agent profile DELETE agent not an Agent": ("DELETE", "/agents/profile", None, {"agent": AGENT_BAD}),
    "XAPI-00256 agent profile POST agent not an Agent": ("POST", "/agents/profile", None, {"agent": AGENT_BAD}),
    "XAPI-00257 agent profile PUT agent not an Agent": ("PUT", "/agents/profile", None, {"agent": AGENT_BAD}),
    "XAPI-00258 agent profile GET agent not an Agent": ("GET", "/agents/profile", None, {"agent": AGENT_BAD}),
    "XAPI-00258 agent profile GET agent a Group": ("GET", "/agents/profile", None, {"agent": GROUP}),
    "XAPI-00260 agent profile GET since not a timestamp": ("GET", "/agents/profile", "profileId", {"since": "x"}),
    "XAPI-00261 agent profile GET without agent": ("GET", "/agents/profile", "agent", {}),
    "XAPI-00262 agent profile DELETE without agent": ("DELETE", "/agents/profile", "agent", {}),
    "XAPI-00263 agent profile POST without agent": ("POST", "/agents/profile", "agent", {}),
    "XAPI-00264 agent profile PUT without agent": ("PUT", "/agents/profile", "agent", {}),
    "XAPI-00265 agent profile DELETE without profileId": ("DELETE", "/agents/profile", "profileId", {}),
    "XAPI-00266 agent profile POST without profileId": ("POST", "/agents/profile", "profileId", {}),
    "XAPI-00267 agent profile PUT without profileId": ("PUT", "/agents/profile", "profileId", {}),
    "XAPI-00295 activity profile GET since not a timestamp": ("GET", "/activities/profile", "profileId", {"since": "x"}),
    "XAPI-00296 activity profile GET without activityId": ("GET", "/activities/profile", "activityId", {}),
    "XAPI-00297 activity profile DELETE without activityId": ("DELETE", "/activities/profile", "activityId", {}),
    "XAPI-00298 activity profile POST without activityId": ("POST", "/activities/profile", "activityId", {}),
    "XAPI-00299 activity profile PUT without activityId": ("PUT", "/activities/profile", "activityId", {}),
    "XAPI-00300 activity profile DELETE without profileId": ("DELETE", "/activities/profile", "profileId", {}),
    "XAPI-00301 activity profile POST without profileId": ("POST", "/activities/profile", "profileId", {}),
    "XAPI-00302 activity profile PUT without profileId": ("PUT", "/activities/profile", "profileId", {}),
    "XAPI-00304 activity profile with an agent parameter": ("GET", "/activities/profile", None, {"agent": json.dumps(agent())}),
    "XAPI-00243 agents GET without agent": ("GET", "/agents", "agent", {}),
    "XAPI-00249 agents GET agent not an Agent": ("GET", "/agents", None, {"agent": AGENT_BAD}),
    "XAPI-00250 activities GET without activityId": ("GET", "/activities", "activityId", {}),
    "XAPI-00250 activities GET activityId not an IRI": ("GET", "/activities", None, {"activityId": "act 1"}),
    "XAPI-00324 statements with an unknown parameter": ("GET", "/statements", None, {"foo": "bar"}),
    "XAPI-00324 state with an unknown parameter": ("GET", "/activities/state", None, {"foo": "bar"}),
    "XAPI-00324 agents with an unknown parameter": ("GET", "/agents", None, {"foo": "bar"}),
    "XAPI-00325 statements with a parameter in another case": ("GET", "/statements", None, {"StatementId": str(uuid.uuid4())}),
    "XAPI-00325 activity profile with a parameter in another case": ("GET", "/activities/profile", None, {"ActivityId": "http://x.org/a"}),
}  # fmt: skip


def _parameters_of(resource: str) -> dict:
    act, who = an_activity(), json.dumps(agent())
    return {
        "/statements": {},
        "/activities/state": {"activityId": act, "agent": who, "stateId": "s1"},
        "/activities/profile": {"activityId": act, "profileId": "p1"},
        "/agents/profile": {"agent": who, "profileId": "p1"},
        "/agents": {"agent": who},
        "/activities": {"activityId": act},
    }[resource]


@pytest.mark.parametrize("what", sorted(REFUSED_REQUESTS))
async def test_a_request_with_a_bad_or_missing_parameter_is_refused(lms, what):
    """A parameter missing where a resource requires it, or of the wrong form (an Agent that
    is not one, a timestamp, a UUID), or unknown to the resource, or in another case: 400
    naming it; a write stores nothing (XAPI-00182).

    Readings: the Agent Profile resource takes an Agent only, not a Group (XAPI-00258: "a
    valid, in structure, Agent"); the Activity Profile resource takes no ``agent`` (XAPI-00304:
    ADL's note); a parameter's name is case-sensitive (XAPI-00325)."""
    lrs = lms["ds101"]
    method, resource, drop, bad = REFUSED_REQUESTS[what]
    params = {**_parameters_of(resource), **bad}
    params.pop(drop, None)
    body = {"x": 1} if method in ("PUT", "POST") else None
    r = await lrs.request(method, resource, params=params, json=body)
    answer = assert_error(r, 400, "bad_request")
    named = next(iter(bad)) if bad else drop
    assert named in answer["message"], answer
    if method in ("PUT", "POST"):  # nothing was written: the document is not there
        full = {
            **_parameters_of(resource),
            **{k: v for k, v in params.items() if k in _parameters_of(resource)},
        }
        assert (await lrs.get(resource, params=full)).status_code in (400, 404)


DOCUMENT_RESOURCES = {  # resource: (its XAPI numbers: endpoint, GET, PUT, POST, DELETE, merge, ...)
    "/activities/state": "XAPI-00230 -00188 -00190 -00189 -00231 -00187 -00191 -00192 -00217 -00216",
    "/activities/profile": "XAPI-00311 -00290 -00287 -00293 -00286 -00292 -00312 -00285 -00291 -00288",
    "/agents/profile": "XAPI-00282 -00274 -00259 -00269 -00271 -00272 -00283",
}


@pytest.mark.parametrize("resource", sorted(DOCUMENT_RESOURCES))
async def test_a_document_resource_stores_reads_and_deletes(lms, resource):
    """Each document resource (the numbers are :data:`DOCUMENT_RESOURCES`'): its endpoint;
    PUT stores (204), GET with the id answers it (200, its Content-Type and ETag), POST of a
    new id stores it (treated as PUT: XAPI-00233, -00280, -00310), DELETE with the id removes
    it (204, then 404)."""
    lrs = lms["ds101"]
    params = documents()[resource]
    id_param = "stateId" if "stateId" in params else "profileId"
    r = await lrs.put(
        resource, params=params, content=b"plain words", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 204 and r.content == b""
    r = await lrs.get(resource, params=params)
    assert r.status_code == 200 and r.content == b"plain words"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["ETag"] == f'"{hashlib.sha1(b"plain words").hexdigest()}"'
    posted = {**params, id_param: "posted"}
    assert (await lrs.post(resource, params=posted, json={"a": 1})).status_code == 204
    assert (await lrs.get(resource, params=posted)).json() == {"a": 1}
    r = await lrs.delete(resource, params=params, headers={"If-Match": r.headers["ETag"]})
    assert r.status_code == 204
    assert_error(await lrs.get(resource, params=params), 404, "not_found")


@pytest.mark.parametrize("resource", sorted(DOCUMENT_RESOURCES))
async def test_xapi_00183_00184_post_merges_json_at_the_top_level(lms, resource):
    """XAPI-00234 (state), -00308 (activity profile), -00279 (agent profile): POST of JSON
    onto a JSON document merges; XAPI-00183: one level deep, a property's whole value
    replaced; XAPI-00184: duplicates take the new value."""
    lrs = lms["ds101"]
    params = documents()[resource]
    assert (
        await lrs.post(resource, params=params, json={"x": "foo", "deep": {"a": 1, "b": 2}})
    ).status_code == 204
    assert (
        await lrs.post(resource, params=params, json={"x": "bar", "y": 1, "deep": {"c": 3}})
    ).status_code == 204
    assert (await lrs.get(resource, params=params)).json() == {"x": "bar", "y": 1, "deep": {"c": 3}}


@pytest.mark.parametrize("resource", sorted(DOCUMENT_RESOURCES))
@pytest.mark.parametrize(
    "case",
    ["stored is not JSON", "posted is not JSON", "stored is not an object", "posted is not an object",
     "posted is not valid JSON"],
)  # fmt: skip
async def test_a_post_that_cannot_merge_is_refused(lms, resource, case):
    """XAPI-00232, -00309, -00278 (a document or the posted one not application/json),
    XAPI-00229, -00313, -00281 (either not a JSON object), XAPI-00235, -00314, -00284 (the
    posted JSON invalid): 400, and the stored document is unchanged."""
    lrs = lms["ds101"]
    params = documents()[resource]
    stored, stored_type = (
        (b"plain", "text/plain")
        if case == "stored is not JSON"
        else (b'{"a": 1}', "application/json")
    )
    if case == "stored is not an object":
        stored = b"[1, 2]"
    posted, posted_type = b'{"b": 2}', "application/json"
    if case == "posted is not JSON":
        posted_type = "text/plain"
    elif case == "posted is not an object":
        posted = b'"words"'
    elif case == "posted is not valid JSON":
        posted = b'{"b": '
    assert (
        await lrs.put(
            resource, params=params, content=stored, headers={"Content-Type": stored_type}
        )
    ).status_code == 204
    r = await lrs.post(
        resource, params=params, content=posted, headers={"Content-Type": posted_type}
    )
    assert_error(r, 400, "bad_request")
    assert (await lrs.get(resource, params=params)).content == stored


@pytest.mark.parametrize("resource", sorted(DOCUMENT_RESOURCES))
async def test_ids_since_a_time(lms, resource):
    """XAPI-00193 (state), -00289 (activity profile), -00270 (agent profile): GET without
    the id lists the ids; with ``since`` (XAPI-00221, -00303, -00268), only those stored
    after it (XAPI-00195, -00294, -00275)."""
    lrs = lms["ds101"]
    params = documents()[resource]
    id_param = "stateId" if "stateId" in params else "profileId"
    context = {k: v for k, v in params.items() if k != id_param}
    assert (
        await lrs.put(resource, params={**context, id_param: "early"}, json={"a": 1})
    ).status_code == 204
    listed = await lrs.get(resource, params=context)
    assert listed.status_code == 200 and listed.json() == ["early"]
    moment = datetime.now(UTC)
    while (
        datetime.now(UTC) <= moment
    ):  # a later stored time than ``moment``, whatever the clock's grain
        pass
    assert (
        await lrs.put(resource, params={**context, id_param: "late"}, json={"a": 2})
    ).status_code == 204
    assert sorted((await lrs.get(resource, params=context)).json()) == ["early", "late"]
    since = moment.isoformat().replace("+00:00", "Z")
    assert (await lrs.get(resource, params={**context, "since": since})).json() == ["late"]


async def test_state_with_a_registration_and_delete_all(lms):
    """XAPI-00218, -00227, -00220, -00219: PUT, POST, GET and DELETE take ``registration``
    (a registration's state is apart from the one without); XAPI-00194: DELETE without
    ``stateId`` deletes the context's documents (204)."""
    lrs = lms["ds101"]
    params = documents()["/activities/state"]
    context = {k: v for k, v in params.items() if k != "stateId"}
    reg = {**params, "registration": str(uuid.uuid4())}
    assert (await lrs.put("/activities/state", params=params, json={"plain": 1})).status_code == 204
    assert (await lrs.put("/activities/state", params=reg, json={"r": 1})).status_code == 204
    assert (await lrs.post("/activities/state", params=reg, json={"s": 2})).status_code == 204
    assert (await lrs.get("/activities/state", params=reg)).json() == {"r": 1, "s": 2}
    assert (await lrs.get("/activities/state", params=params)).json() == {"plain": 1}
    assert (await lrs.delete("/activities/state", params=reg)).status_code == 204
    assert_error(await lrs.get("/activities/state", params=reg), 404, "not_found")
    assert (
        await lrs.put("/activities/state", params={**context, "stateId": "two"}, json={})
    ).status_code == 204
    assert (await lrs.delete("/activities/state", params=context)).status_code == 204
    assert (await lrs.get("/activities/state", params=context)).json() == []


@pytest.mark.parametrize("resource", ["/activities/profile", "/agents/profile"])
async def test_xapi_00322_00273_etags_guard_profile_writes(lms, resource):
    """XAPI-00322: ETags for optimistic concurrency: If-Match with another ETag, or
    If-None-Match: * when the document exists, is 412; with the document's own ETag the
    write goes through. XAPI-00273: a PUT over an existing profile without either header is
    refused (409 with a message). A PUT of a new profile needs neither."""
    lrs = lms["ds101"]
    params = documents()[resource]
    assert (await lrs.put(resource, params=params, json={"v": 1})).status_code == 204
    tag = (await lrs.get(resource, params=params)).headers["ETag"]
    body = assert_error(await lrs.put(resource, params=params, json={"v": 2}), 409, "conflict")
    assert "If-Match" in body["message"]
    r = await lrs.put(
        resource, params=params, json={"v": 2}, headers={"If-Match": '"' + "0" * 40 + '"'}
    )
    assert_error(r, 412, "precondition_failed")
    r = await lrs.put(resource, params=params, json={"v": 2}, headers={"If-None-Match": "*"})
    assert_error(r, 412, "precondition_failed")
    r = await lrs.put(resource, params=params, json={"v": 2}, headers={"If-Match": tag})
    assert r.status_code == 204
    assert (await lrs.get(resource, params=params)).json() == {"v": 2}


async def test_xapi_00236_to_00248_the_agents_resource(lms):
    """XAPI-00245: base IRI + /agents; XAPI-00236: GET; XAPI-00248: a Person (XAPI-00237:
    ``objectType`` "Person"; -00238 ``name``, -00239 ``mbox`` (mailto: -00244), -00240
    ``mbox_sha1sum``, -00241 ``openid``, -00242 ``account``: each a list); an agent no
    statement names is still a Person, with its own identifier (XAPI-00247's reading)."""
    lrs = lms["ds101"]
    ada = agent()
    assert (await post(lrs, statement(actor={**ada, "name": "Ada"}))).status_code == 200
    assert (await post(lrs, statement(actor={**ada, "name": "Ada L."}))).status_code == 200
    person = (await lrs.get("/agents", params={"agent": json.dumps(ada)})).json()
    assert person["objectType"] == "Person"
    assert sorted(person["name"]) == ["Ada", "Ada L."] and person["mbox"] == [ada["mbox"]]
    assert all(m.startswith("mailto:") for m in person["mbox"])
    for ifi, value in (("mbox_sha1sum", "a" * 40), ("openid", "https://id.example.org/x"),
                       ("account", {"homePage": "https://lms.example.org", "name": uid()})):  # fmt: skip
        r = await lrs.get(
            "/agents", params={"agent": json.dumps({"objectType": "Agent", ifi: value})}
        )
        assert (
            r.status_code == 200 and r.json()[ifi] == [value] and r.json()["objectType"] == "Person"
        )


async def test_xapi_00251_to_00254_the_activities_resource(lms):
    """XAPI-00252: base IRI + /activities; XAPI-00253: GET; XAPI-00251: the complete Activity
    object; XAPI-00254: with what every statement says of it (two names in two languages
    from two statements: both); another course's statements do not describe it."""
    lrs = lms["ds101"]
    act = an_activity()
    one = statement(
        object={"objectType": "Activity", "id": act, "definition": {"name": {"en-US": "meeting"}}}
    )
    two = statement(
        object={"objectType": "Activity", "id": act, "definition": {"name": {"fr-FR": "réunion"}}}
    )
    for s in (one, two):
        assert (await post(lrs, s)).status_code == 200
    other = statement(
        object={"objectType": "Activity", "id": act, "definition": {"name": {"de": "Treffen"}}},
        context={},
    )
    assert (await post(lms["stat200"], other)).status_code == 200
    r = await lrs.get("/activities", params={"activityId": act})
    assert r.status_code == 200
    assert r.json() == {"objectType": "Activity", "id": act,
                        "definition": {"name": {"en-US": "meeting", "fr-FR": "réunion"}}}  # fmt: skip


# --------------------------------------------------------------------------- about, versions, auth

#: the resources that need the version header and credentials (all but About)
GUARDED = [
    "/statements",
    "/activities/state",
    "/activities/profile",
    "/agents/profile",
    "/agents",
    "/activities",
]


async def test_xapi_00315_to_00319_about(lms):
    """XAPI-00315: base IRI + /about; XAPI-00319: GET, 200 and ``version``; XAPI-00318: a list
    of strings; XAPI-00317: 1.0.3 among them; XAPI-00316: each 0.9, 0.95, 1.0.0 or 1.0.x;
    it needs neither credentials nor the version header (XAPI-00321's exception)."""
    r = await lms["ds101"].get("/about", headers={"X-Experience-API-Version": ""}, auth=None)
    assert r.status_code == 200
    versions = r.json()["version"]
    assert isinstance(versions, list) and all(isinstance(v, str) for v in versions)
    assert "1.0.3" in versions
    assert all(re.fullmatch(r"0\.9|0\.95|1\.0\.\d+", v) for v in versions)


@pytest.mark.parametrize("resource", GUARDED)
async def test_xapi_00321_00331_the_version_header_is_required(lms, resource):
    """XAPI-00321, -00331: every resource but About refuses a request without
    X-Experience-API-Version (400) or with a version not 1.0.x; XAPI-00333: every answer
    carries the header, 1.0.3."""
    lrs = lms["ds101"]
    params = _parameters_of(resource)
    async with httpx.AsyncClient(base_url=lrs.base_url, auth=lrs.auth) as bare:
        for version in (None, "0.95", "2.0.0"):
            headers = {"X-Experience-API-Version": version} if version else {}
            r = await bare.get(resource, params=params, headers=headers)
            body = assert_error(r, 400, "bad_request")
            assert "X-Experience-API-Version" in body["message"]
    r = await lrs.get(resource, params=params)
    assert r.headers["X-Experience-API-Version"] == "1.0.3"


@pytest.mark.parametrize("version", ["1.0", "1.0.0", "1.0.1", "1.0.3", "1.0.9"])
async def test_xapi_00333_every_1_0_x_version_is_taken(lms, version):
    """Communication 3.3: a request of version 1.0 or any 1.0.x is served; the answer says
    1.0.3 (XAPI-00333: the latest patch version)."""
    r = await lms["ds101"].get(
        "/statements", params={"limit": "1"}, headers={"X-Experience-API-Version": version}
    )
    assert r.status_code == 200 and r.headers["X-Experience-API-Version"] == "1.0.3"


@pytest.mark.parametrize("resource", GUARDED)
async def test_xapi_00334_00335_basic_credentials(lms, resource):
    """XAPI-00335: HTTP Basic authentication; XAPI-00334: none, or wrong ones, 401 with
    WWW-Authenticate (on every resource but About)."""
    lrs = lms["ds101"]
    params = _parameters_of(resource)
    for auth in (None, httpx.BasicAuth("nobody", "wrong")):
        r = await lrs.get(resource, params=params, auth=auth)
        assert_error(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert (await lrs.get(resource, params=params)).status_code in (200, 404)


async def test_xapi_00327_another_course_is_forbidden(lms):
    """XAPI-00327: valid credentials that are not enough: a source posting a statement of
    another course (its context names stat200) gets 403, and nothing is stored."""
    lrs = lms["ds101"]
    s = statement(
        context={"contextActivities": {"grouping": [{"id": "urn:hub-ext:course:stat200"}]}}
    )
    before = count(lrs)
    assert assert_error(await post(lrs, s), 403, "forbidden")["course"] == "stat200"
    assert count(lrs) == before


async def test_xapi_00328_a_body_beyond_the_limit_is_413(lms):
    """XAPI-00328: a request larger than the LRS takes (``max_body_size``) gets 413 with the
    reason, when its Content-Length says so (answered before the body is read: this client
    sends only the start of it, as one that reads an early answer would) and when it comes in
    chunks (read and dropped, then answered); nothing is stored."""
    lrs = lms["ds101"]
    limit = lrs.app.max_body_size
    before = count(lrs)
    url = httpx.URL(str(lrs.base_url) + "/statements")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    head = (
        f"POST {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}\r\n"
        f"Authorization: {credentials(lrs)}\r\nX-Experience-API-Version: 1.0.3\r\n"
        f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n["
    )
    writer.write(head.encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 60)  # read until the server closes
    writer.close()
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 413"), answer[:300]
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"] == "payload_too_large"
    body = json.dumps(statement(result={"response": "x" * limit})).encode()

    async def chunks():
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)]

    r = await lrs.post(
        "/statements", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(r, 413, "payload_too_large")
    assert count(lrs) == before


async def test_an_unknown_resource_is_a_json_404(lms):
    """Communication 3.2 (errors with a reason): a path that is no resource answers a JSON
    404 naming the resources there are, not a page."""
    body = assert_error(await lms["ds101"].get("/statement"), 404, "not_found")
    assert "xAPI/statements" in body["message"]


def test_related_rows_names_what_a_statement_is_about_besides_its_object_and_actor():
    """:func:`~hub_ext.services.events.related.related_rows`, the one function the insert
    path calls: the context's and a SubStatement's activities; Group members of the actor
    and object (``member``: the plain ``agent`` filter's), and authority, instructor, team
    and SubStatement agents (only ``related_agents``'); an anonymous Group by its members
    only; each once."""
    from hub_ext.services.events.related import related_rows
    from hub_ext.services.events.xapi import actor_key

    ada, bob, cy, dee, eve, fay = (agent(n) for n in ("ada", "bob", "cy", "dee", "eve", "fay"))
    s = substatement(
        actor=bob,
        object=cy,
        context={"instructor": ada, "contextActivities": {"other": [{"id": "https://x.org/o"}]}},
    )
    team = {
        "objectType": "Group",
        "account": {"homePage": "https://t.org", "name": "t"},
        "member": [dee],
    }
    s["actor"] = {"objectType": "Group", "member": [ada, dee]}
    s["context"].update(instructor=ada, team=team)
    s["authority"] = {"objectType": "Group", "member": [eve, fay]}
    activities, agents = related_rows(s)
    assert activities == ["urn:hub-ext:course:ds101", "https://x.org/o"]
    k = actor_key
    assert agents == [
        (k(ada), True), (k(dee), True),  # the actor Group's members
        (k(eve), False), (k(fay), False),  # the authority's members (anonymous: no key of its own)
        (k(ada), False), (k(team), False), (k(dee), False),  # instructor, team and its member
        (k(bob), False), (k(cy), False),  # the SubStatement's actor and object
    ]  # fmt: skip
    assert related_rows(statement()) == (["urn:hub-ext:course:ds101"], [])
    sub = substatement()  # its object an Activity: one of the statement's related activities
    assert related_rows(sub)[0] == ["urn:hub-ext:course:ds101", sub["object"]["object"]["id"]]
