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

import copy
import hashlib
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from hub_ext.services.events.models import Statement
from tests.events_fixtures import postgres_url, two_courses_lms  # noqa: F401
from tests.test_xapi import assert_error
from tests.test_xapi_attachments import attachment, multipart, part_headers, signed, signer

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
    token = jwt.encode(s, "a shared secret of some length", algorithm="HS256").encode()
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
