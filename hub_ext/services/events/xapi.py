"""xAPI 1.0.3 statements: validation and the mapping to a store row (pure functions).

:func:`validate_statement` checks a statement the way the specification's "Statement
Requirements" (xAPI 1.0.3, Part Two, section 2) describe: only the properties it names, an
actor with exactly one identifier, IRIs where IRIs are required, ISO 8601 timestamps and
durations, language maps, score ranges, the five object types (Activity, Agent, Group,
StatementRef, SubStatement). The first problem found is raised as :class:`StatementError`
with the JSON path of the bad field, e.g. ``statements[3].verb.id: 'bad' is not an IRI``.

Every string it checks must also be one a store can keep (no NUL, no lone surrogate), and
every number finite. :func:`to_row` turns a validated statement into the dict the
``statements`` table takes; :func:`check_row` refuses, the same way, one the table cannot
hold (a string longer than its column, a whole number beyond it), so that what SQLite would
take and PostgreSQL refuse is refused on both.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import BigInteger, Integer

from .models import Statement

__all__ = [
    "CLICKS_EXTENSION",
    "COURSE_IRI_PREFIX",
    "SUPPORTED_VERSION",
    "StatementError",
    "actor_key",
    "canonical",
    "accepted_languages",
    "check_iri",
    "check_string",
    "check_uuid",
    "check_row",
    "course_iri",
    "formatted",
    "merge_definition",
    "person",
    "parse_timestamp",
    "restamp",
    "same_statement",
    "to_row",
    "validate_agent",
    "validate_statement",
    "VERSION",
]

VERSION = "1.0.3"
#: the ``version`` the LRS gives a statement sent without one (Data 2.4.10)
STATEMENT_VERSION = "1.0.0"
#: the versions this LRS takes (``X-Experience-API-Version``, a statement's ``version``)
SUPPORTED_VERSION = re.compile(r"^1\.0(\.\d+)?$")
#: result extension holding how many interactions a statement stands for (OULAD's sum_click)
CLICKS_EXTENSION = "urn:hub-ext:xapi:clicks"
#: an activity in context.contextActivities (grouping or parent) with this prefix names the course
COURSE_IRI_PREFIX = "urn:hub-ext:course:"
VOIDED = "http://adlnet.gov/expapi/verbs/voided"

_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+$")
_MBOX = re.compile(r"^mailto:[^@\s]+@[^@\s]+$")
_SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")
#: a language tag as RFC 5646's ABNF (section 2.1) spells one: language (with up to three
#: extended subtags), script, region, variants, extensions, private use; or private use
#: alone, or one of the irregular grandfathered tags (the regular ones match the rest)
_LANG = re.compile(
    r"""^(?:
      (?:[a-z]{2,3}(?:-[a-z]{3}){0,3}|[a-z]{4}|[a-z]{5,8})
      (?:-[a-z]{4})?
      (?:-(?:[a-z]{2}|[0-9]{3}))?
      (?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*
      (?:-[0-9a-wy-z](?:-[a-z0-9]{2,8})+)*
      (?:-x(?:-[a-z0-9]{1,8})+)?
    | x(?:-[a-z0-9]{1,8})+
    | en-GB-oed | i-(?:ami|bnn|default|enochian|hak|klingon|lux|mingo|navajo|pwn|tao|tay|tsu)
    | sgn-(?:BE-FR|BE-NL|CH-DE)
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
#: an Internet media type (RFC 6838): type/subtype, then any parameters
_MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(\s*;.*)?$"
)
_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?$"
)
#: ISO 8601 durations: PnYnMnDTnHnMnS, or PnW alone (weeks combine with nothing: XAPI-00124)
_DURATION = re.compile(
    r"^P((?=\d|T\d)(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?D)?"
    r"(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?|\d+(\.\d+)?W)$"
)
#: an IRL: an absolute URL one can fetch (a scheme such as http, then //)
_IRL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^\s<>\"{}|\\^`]+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: what no stored string may hold: NUL (PostgreSQL's text refuses it) and lone UTF-16
#: surrogates (JSON's \ud800 escapes; not text, UTF-8 cannot encode them)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

_STATEMENT_KEYS = {
    "id", "actor", "verb", "object", "result", "context", "timestamp", "stored",
    "authority", "version", "attachments",
}  # fmt: skip
_SUBSTATEMENT_KEYS = {
    "objectType",
    "actor",
    "verb",
    "object",
    "result",
    "context",
    "timestamp",
    "attachments",
}
_AGENT_KEYS = {"objectType", "name", "mbox", "mbox_sha1sum", "openid", "account"}
_GROUP_KEYS = _AGENT_KEYS | {"member"}
_IFIS = ("mbox", "mbox_sha1sum", "openid", "account")
_ACTIVITY_DEF_KEYS = {
    "name", "description", "type", "moreInfo", "extensions", "interactionType",
    "correctResponsesPattern", "choices", "scale", "source", "target", "steps",
}  # fmt: skip
_INTERACTION_TYPES = {
    "true-false", "choice", "fill-in", "long-fill-in", "matching", "performance",
    "sequencing", "likert", "numeric", "other",
}  # fmt: skip
_CONTEXT_KEYS = {
    "registration", "instructor", "team", "contextActivities", "revision", "platform",
    "language", "statement", "extensions",
}  # fmt: skip


class StatementError(ValueError):
    """A statement that does not meet the specification; the message names the field."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


# --------------------------------------------------------------------------- helpers


def _fail(path: str, message: str):
    raise StatementError(path, message)


def _obj(value, path: str, allowed: set[str], required: tuple[str, ...] = ()) -> dict:
    if not isinstance(value, dict):
        _fail(path, f"must be an object, not {type(value).__name__}")
    if not allowed.issuperset(value):
        unknown = sorted(set(value) - allowed)
        _fail(path, f"unknown property {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in value:
            _fail(path, f"missing required property {key!r}")
    if None in value.values():
        key = next(k for k, v in value.items() if v is None)
        _fail(f"{path}.{key}", "must not be null")
    return value


@dataclass(frozen=True, slots=True)
class _Scalar:
    """A kind of value a field holds: ``check(value, path)`` returns the value if it is of
    ``kind`` (and matches ``pattern``, passes ``test``) and, a string, holds nothing a store
    cannot keep; else it raises :class:`StatementError` with ``message`` (formatted with
    ``value`` and its ``type``)."""

    kind: type | tuple[type, ...]
    message: str
    pattern: re.Pattern | None = None
    test: Callable[[Any], bool] | None = None

    def __call__(self, value, path: str):
        if (
            not isinstance(value, self.kind)
            or (self.pattern is not None and self.pattern.match(value) is None)
            or (self.test is not None and not self.test(value))
        ):
            _fail(path, self.message.format(value=value, type=type(value).__name__))
        if isinstance(value, str) and _UNSTORABLE.search(value):
            _fail(path, "holds a NUL character or a lone surrogate (\\u0000, \\ud800-\\udfff)")
        return value


def _finite(value: int | float) -> bool:
    if isinstance(value, bool):  # an int to Python, not a number to JSON
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # a whole number beyond every float
        return False


# one checker per kind of value: what it is, and what the 400 says when a value is not
_str = _Scalar(str, "must be a string, not {type}")
_bool = _Scalar(bool, "must be true or false, not {value!r}")
_number = _Scalar((int, float), "must be a (finite) number, not {value!r}", test=_finite)
_iri = _Scalar(str, "{value!r} is not an IRI (an absolute identifier such as http://...)", _IRI)
_uuid = _Scalar(str, "{value!r} is not a UUID", _UUID)
_mbox = _Scalar(str, "{value!r} is not a mailto: IRI such as mailto:ada@example.org", _MBOX)
_sha1 = _Scalar(str, "must be 40 hexadecimal digits", _SHA1)
_irl = _Scalar(str, "{value!r} is not an IRL (an absolute URL such as https://...)", _IRL)
_length = _Scalar(
    int, "must be a whole number of octets, not {value!r}", test=lambda v: _finite(v) and v >= 0
)
_media_type = _Scalar(str, "{value!r} is not a media type such as text/plain", _MEDIA_TYPE)
_language_tag = _Scalar(str, "{value!r} is not a language tag (RFC 5646) such as en-US", _LANG)
_duration = _Scalar(str, "{value!r} is not an ISO 8601 duration such as PT4M30S", _DURATION)
_version = _Scalar(str, "{value!r} is not a 1.0.x version", SUPPORTED_VERSION)
_interaction_type = _Scalar(
    str, "{value!r} is not an interaction type", test=_INTERACTION_TYPES.__contains__
)
_strings = _Scalar(
    list, "must be a list of strings", test=lambda v: all(isinstance(s, str) for s in v)
)


def _language_map(value, path: str) -> None:
    if not isinstance(value, dict):
        _fail(path, "must be a language map (an object of language tag -> string)")
    for tag, text in value.items():
        _language_tag(tag, path)
        _str(text, f"{path}.{tag}")


def _extensions(value, path: str) -> None:
    if not isinstance(value, dict):
        _fail(path, "must be an object whose keys are IRIs")
    for key in value:
        _iri(key, f"{path} key")


def parse_timestamp(value, path: str = "timestamp") -> datetime:
    """An ISO 8601 timestamp as an aware UTC datetime (no zone given means UTC)."""
    if not isinstance(value, str):
        _fail(path, f"{value!r} is not an ISO 8601 timestamp")
    m = _TIMESTAMP.match(value)
    if not m:
        _fail(path, f"{value!r} is not an ISO 8601 timestamp such as 2026-09-01T10:00:00Z")
    if m[8] in ("-00", "-0000", "-00:00"):
        _fail(path, f"{value!r}: the offset -00:00 is not allowed")
    text = value.replace(" ", "T")
    frac = m[7] or ""
    if len(frac) > 7:  # fromisoformat takes at most microseconds
        text = text.replace(frac, frac[:7])
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except ValueError:
        _fail(path, f"{value!r} is not a valid date and time")
    except OverflowError:
        _fail(path, f"{value!r} is out of range (in UTC, the years 1 to 9999)")


def _fields(value: dict, path: str, checks: dict[str, Callable]) -> dict:
    """Check each field of ``value`` that ``checks`` names with its checker, in that order
    (a checker is called as ``check(field_value, path_of_the_field)``)."""
    for key, check in checks.items():
        if key in value:
            check(value[key], f"{path}.{key}")
    return value


def _authority(value, path: str) -> dict:
    """An Agent, or an anonymous Group of two Agents (an OAuth consumer and its user):
    XAPI-00024, -00098, -00100."""
    _agent(value, path)
    if value.get("objectType") == "Group":
        if any(k in value for k in _IFIS):
            _fail(path, "an authority Group must be anonymous (no identifier)")
        if len(value.get("member", ())) != 2:
            _fail(f"{path}.member", "an authority Group has exactly two members")
    return value


def _agent(value, path: str, *, group_ok: bool = True) -> dict:
    if not isinstance(value, dict):
        _fail(path, "must be an Agent or Group object")
    kind = value.get("objectType", "Agent")
    if kind == "Group" and group_ok:
        _obj(value, path, _GROUP_KEYS)
        ifis = [k for k in _IFIS if k in value]
        if len(ifis) > 1:
            _fail(path, f"a Group has at most one identifier, found {', '.join(ifis)}")
        if not ifis and "member" not in value:
            _fail(path, "an anonymous Group (no identifier) needs a 'member' list")
        if "member" in value:
            if not isinstance(value["member"], list):
                _fail(f"{path}.member", "must be a list of Agents")
            for i, member in enumerate(value["member"]):
                _agent(member, f"{path}.member[{i}]", group_ok=False)
    elif kind == "Agent":
        _obj(value, path, _AGENT_KEYS)
        ifis = [k for k in _IFIS if k in value]
        if len(ifis) != 1:
            _fail(
                path,
                f"an Agent needs exactly one identifier ({', '.join(_IFIS)}), found {len(ifis)}",
            )
    else:
        what = "Agent" if not group_ok else "Agent or Group"
        _fail(f"{path}.objectType", f"{kind!r} is not valid here (expected {what})")
    return _fields(value, path, _AGENT_FIELDS)


def _account(value, path: str) -> dict:
    _obj(value, path, {"homePage", "name"}, ("homePage", "name"))
    return _fields(value, path, _ACCOUNT_FIELDS)


def validate_agent(value: Any, path: str = "agent", *, group_ok: bool = True) -> dict:
    """Check an Agent or Group (e.g. the ``agent`` parameter of a statements query); with
    ``group_ok`` False, an Agent only (the document resources' and the Agents resource's)."""
    return _agent(value, path, group_ok=group_ok)


def check_string(value: Any, path: str, *, max_length: int | None = None) -> str:
    """``value`` if it is a string a store can keep (no NUL, no lone surrogate) of at most
    ``max_length`` characters, else :class:`StatementError`."""
    _str(value, path)
    if max_length is not None and len(value) > max_length:
        _fail(path, f"is {len(value)} characters long; this LRS keeps at most {max_length}")
    return value


def check_iri(value: Any, path: str, *, max_length: int | None = None) -> str:
    """``value`` if it is an IRI (of at most ``max_length`` characters), else
    :class:`StatementError`."""
    _iri(value, path)
    return check_string(value, path, max_length=max_length)


def check_uuid(value: Any, path: str) -> str:
    """``value`` if it is a UUID, else :class:`StatementError`."""
    return _uuid(value, path)


def _team(value, path: str) -> dict:
    if _agent(value, path).get("objectType") != "Group":
        _fail(path, "must be a Group")
    return value


def _verb(value, path: str) -> dict:
    _obj(value, path, {"id", "display"}, ("id",))
    return _fields(value, path, _VERB_FIELDS)


_INTERACTION_COMPONENTS = ("choices", "scale", "source", "target", "steps")


def _components(value, path: str) -> None:
    if not isinstance(value, list):
        _fail(path, "must be a list of interaction components")
    for i, component in enumerate(value):
        where = f"{path}[{i}]"
        _obj(component, where, {"id", "description"}, ("id",))
        _str(component["id"], f"{where}.id")
        if "description" in component:
            _language_map(component["description"], f"{where}.description")


def _definition(value, path: str) -> dict:
    _obj(value, path, _ACTIVITY_DEF_KEYS)
    if "interactionType" not in value:
        given = [k for k in ("correctResponsesPattern", *_INTERACTION_COMPONENTS) if k in value]
        if given:  # XAPI-00064
            _fail(f"{path}.{given[0]}", "is only allowed with an interactionType")
    return _fields(value, path, _DEFINITION_FIELDS)


def _object_type(value, path: str, kind: str) -> None:
    if value.get("objectType", kind) != kind:
        _fail(f"{path}.objectType", f"{value['objectType']!r} is not valid here (expected {kind})")


def _activity(value, path: str) -> dict:
    _obj(value, path, {"objectType", "id", "definition"}, ("id",))
    _object_type(value, path, "Activity")
    return _fields(value, path, _ACTIVITY_FIELDS)


def _statement_ref(value, path: str) -> dict:
    _obj(value, path, {"objectType", "id"}, ("objectType", "id"))
    _object_type(value, path, "StatementRef")  # XAPI-00092 for context.statement
    return _fields(value, path, _STATEMENT_REF_FIELDS)


def _object(value, path: str, *, sub: bool = False) -> dict:
    if not isinstance(value, dict):
        _fail(path, "must be an object (Activity, Agent, Group, StatementRef or SubStatement)")
    kind = value.get("objectType", "Activity")
    if kind == "Activity":
        return _activity(value, path)
    if kind in ("Agent", "Group"):
        return _agent(value, path)
    if kind == "StatementRef":
        return _statement_ref(value, path)
    if kind == "SubStatement":
        if sub:
            _fail(f"{path}.objectType", "a SubStatement cannot contain another SubStatement")
        _obj(value, path, _SUBSTATEMENT_KEYS, ("actor", "verb", "object"))
        _body(value, path, sub=True)
        return value
    _fail(f"{path}.objectType", f"{kind!r} is not an object type")


def _score(value, path: str) -> dict:
    score = _obj(value, path, {"scaled", "raw", "min", "max"})
    for key in score:
        _number(score[key], f"{path}.{key}")
    if "scaled" in score and not -1 <= score["scaled"] <= 1:
        _fail(f"{path}.scaled", f"{score['scaled']} is not between -1 and 1")
    if "min" in score and "max" in score and score["min"] > score["max"]:
        _fail(f"{path}.min", f"min {score['min']} is greater than max {score['max']}")
    if "raw" in score:
        if "min" in score and score["raw"] < score["min"]:
            _fail(f"{path}.raw", f"{score['raw']} is below min {score['min']}")
        if "max" in score and score["raw"] > score["max"]:
            _fail(f"{path}.raw", f"{score['raw']} is above max {score['max']}")
    return score


def _result(value, path: str) -> dict:
    _obj(value, path, {"score", "success", "completion", "response", "duration", "extensions"})
    return _fields(value, path, _RESULT_FIELDS)


def _context_activities(value, path: str) -> dict:
    _obj(value, path, {"parent", "grouping", "category", "other"})
    for key, acts in value.items():
        for i, act in enumerate(acts if isinstance(acts, list) else [acts]):
            _activity(act, f"{path}.{key}[{i}]")
    return value


def _context(value, path: str) -> dict:
    _obj(value, path, _CONTEXT_KEYS)
    return _fields(value, path, _CONTEXT_FIELDS)


def _attachments(value, path: str) -> list:
    if not isinstance(value, list):
        _fail(path, "must be a list")
    for i, att in enumerate(value):
        a = _obj(
            att,
            f"{path}[{i}]",
            {"usageType", "display", "description", "contentType", "length", "sha2", "fileUrl"},
            ("usageType", "display", "contentType", "length", "sha2"),
        )
        _fields(a, f"{path}[{i}]", _ATTACHMENT_FIELDS)
    return value


def _body(value: dict, path: str, *, sub: bool = False) -> None:
    _agent(value["actor"], f"{path}.actor")
    _verb(value["verb"], f"{path}.verb")
    obj = _object(value["object"], f"{path}.object", sub=sub)
    kind = obj.get("objectType", "Activity")
    if value["verb"]["id"] == VOIDED and not sub and kind != "StatementRef":
        _fail(f"{path}.object", "a voiding statement's object must be a StatementRef")
    _fields(value, path, _BODY_FIELDS)
    for key in ("revision", "platform"):
        if kind != "Activity" and key in value.get("context", ()):
            _fail(f"{path}.context.{key}", "only allowed when the object is an Activity")


#: the checker of each property of each object, in the order they are checked
_ACCOUNT_FIELDS = {"homePage": _irl, "name": _str}
_AGENT_FIELDS = {
    "name": _str, "mbox": _mbox, "mbox_sha1sum": _sha1, "openid": _iri, "account": _account,
}  # fmt: skip
_VERB_FIELDS = {"id": _iri, "display": _language_map}
_DEFINITION_FIELDS = {
    "name": _language_map, "description": _language_map, "type": _iri, "moreInfo": _irl,
    "extensions": _extensions, "interactionType": _interaction_type,
    "correctResponsesPattern": _strings, "choices": _components, "scale": _components,
    "source": _components, "target": _components, "steps": _components,
}  # fmt: skip
_ATTACHMENT_FIELDS = {
    "usageType": _iri, "display": _language_map, "description": _language_map,
    "contentType": _media_type, "length": _length, "sha2": _str, "fileUrl": _irl,
}  # fmt: skip
_ACTIVITY_FIELDS = {"id": _iri, "definition": _definition}
_STATEMENT_REF_FIELDS = {"id": _uuid}
_RESULT_FIELDS = {
    "score": _score, "success": _bool, "completion": _bool, "response": _str,
    "duration": _duration, "extensions": _extensions,
}  # fmt: skip
_CONTEXT_FIELDS = {
    "registration": _uuid, "instructor": _agent, "team": _team,
    "contextActivities": _context_activities, "revision": _str, "platform": _str,
    "language": _language_tag, "statement": _statement_ref, "extensions": _extensions,
}  # fmt: skip
_BODY_FIELDS = {
    "result": _result, "context": _context, "timestamp": parse_timestamp,
    "attachments": _attachments,
}  # fmt: skip
_STATEMENT_FIELDS = {
    "id": _uuid, "version": _version, "stored": parse_timestamp, "authority": _authority,
}  # fmt: skip


def validate_statement(value: Any, path: str = "statement") -> dict:
    """Check one statement; raise :class:`StatementError` naming the first bad field."""
    _obj(value, path, _STATEMENT_KEYS, ("actor", "verb", "object"))
    _fields(value, path, _STATEMENT_FIELDS)
    _body(value, path)
    return value


# --------------------------------------------------------------------------- mapping


def actor_key(agent: dict) -> str:
    """One string for an agent's identifier: ``mbox:mailto:a@b``, ``account:<home>|<name>``."""
    if "account" in agent:
        return f"account:{agent['account']['homePage']}|{agent['account']['name']}"
    for key in ("mbox", "mbox_sha1sum", "openid"):
        if key in agent:
            return f"{key}:{agent[key]}"
    members = sorted(actor_key(m) for m in agent.get("member", ()))
    return "group:" + ",".join(members)


def learner_of(agent: dict) -> str | None:
    """The learner an actor maps to: an account's name, else the e-mail address."""
    if "account" in agent:
        return agent["account"]["name"]
    if "mbox" in agent:
        return agent["mbox"][len("mailto:") :].lower()
    return None


def course_iri(course_id: str) -> str:
    """The activity IRI that names a course in ``context.contextActivities.grouping``."""
    return COURSE_IRI_PREFIX + course_id


def course_of(statement: dict, activity_courses: dict[str, str] | None = None) -> str | None:
    """The course a statement names in its context activities (grouping, then parent)."""
    context = statement.get("context")
    for iri in context_activity_ids(context, ("grouping", "parent", "other", "category")):
        if isinstance(iri, str) and iri.startswith(COURSE_IRI_PREFIX):
            return iri[len(COURSE_IRI_PREFIX) :]
        if activity_courses and iri in activity_courses:
            return activity_courses[iri]
    return None


def canonical(statement: dict) -> str:
    """The statement as compared for "same statement" (without what the LRS adds)."""
    body = {k: v for k, v in statement.items() if k not in ("stored", "authority", "version")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


_EPOCH = date(1970, 1, 1)
_last_stored: tuple[datetime, str] | None = None


def _stored_text(stored: datetime) -> str:
    """``stored`` as ISO text (the same instant for a whole batch: computed once)."""
    global _last_stored
    cached = _last_stored
    if cached is not None and cached[0] is stored:
        return cached[1]
    text = stored.isoformat().replace("+00:00", "Z")
    _last_stored = (stored, text)
    return text


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def to_row(
    statement: dict,
    *,
    stored: datetime,
    source: str,
    course_id: str | None = None,
    learner: str | None = None,
    timestamp: datetime | None = None,
) -> dict:
    """The ``statements`` row for a validated statement (``id`` is added if missing).

    ``statement`` is completed in place as the LRS stores it: id, timestamp (= stored when
    absent), stored, version.
    """
    if "id" not in statement:  # (not setdefault: a uuid4 each time costs 3% of an import)
        statement["id"] = str(uuid.uuid4())
    statement["id"] = statement["id"].lower()
    _activity_lists(statement)
    if (
        isinstance(statement["object"], dict)
        and statement["object"].get("objectType") == "SubStatement"
    ):
        _activity_lists(statement["object"])
    moment = timestamp or (
        parse_timestamp(statement["timestamp"]) if "timestamp" in statement else stored
    )
    if "timestamp" not in statement:
        statement["timestamp"] = moment.isoformat().replace("+00:00", "Z")
    statement["stored"] = _stored_text(stored)
    # the version it was sent with; else 1.0.0, the data model's (Data 2.4.10: XAPI-00332)
    statement.setdefault("version", STATEMENT_VERSION)
    obj = statement["object"]
    kind = obj.get("objectType", "Activity")
    if kind in ("Agent", "Group"):
        object_id = actor_key(obj)
    elif kind == "StatementRef":  # statement ids are stored lowercase
        object_id = obj.get("id", "").lower()
    else:
        object_id = obj.get("id", "")
    result = statement.get("result") or {}
    score = result.get("score") or {}
    value = score.get("raw")
    if value is None and "scaled" in score:
        value = score["scaled"] * 100
    clicks = (result.get("extensions") or {}).get(CLICKS_EXTENSION, 1)
    ts = _naive(moment)
    return {
        "id": statement["id"],
        "course_id": course_id,
        "learner": learner if learner is not None else learner_of(statement["actor"]),
        "actor_key": actor_key(statement["actor"]),
        "verb": statement["verb"]["id"],
        "object_type": kind,
        "object_id": object_id,
        "timestamp": ts,
        "stored": _naive(stored),
        "day": (ts.date() - _EPOCH).days,
        "clicks": clicks if isinstance(clicks, int) and not isinstance(clicks, bool) else 1,
        "score": value,
        "source": source,
        "voided": False,
        "raw": statement,
        "registration": _registration(statement),
        "course_context": names_its_course(statement, course_id),
    }


def context_activity_ids(context: dict | None, kinds: tuple[str, ...] | None = None) -> list[str]:
    """The ids of a context's activities: of every list (parent, grouping, category,
    other), or of the ``kinds`` named, in that order."""
    lists = (context or {}).get("contextActivities") or {}
    return [
        act["id"]
        for kind in (lists if kinds is None else kinds)
        for acts in [lists.get(kind) or []]
        for act in (acts if isinstance(acts, list) else [acts])
        if isinstance(act, dict) and "id" in act
    ]


def names_its_course(statement: dict, course_id: str | None) -> bool:
    """Whether the statement's own context activities (not a SubStatement's) hold
    ``course_id``'s IRI (:func:`course_iri`)."""
    return course_id is not None and course_iri(course_id) in context_activity_ids(
        statement.get("context")
    )


def _registration(statement: dict) -> str | None:
    registration = (statement.get("context") or {}).get("registration")
    return registration.lower() if isinstance(registration, str) else None


def _activity_lists(statement: dict) -> None:
    """Each ``context.contextActivities`` value as a list (a single Activity is read back as
    a list of one: XAPI-00096)."""
    ca = (statement.get("context") or {}).get("contextActivities")
    if isinstance(ca, dict):
        for key, acts in ca.items():
            if isinstance(acts, dict):
                ca[key] = [acts]


def restamp(row: dict, stored: datetime, *, lrs_timestamp: bool) -> None:
    """Give ``row`` (of :func:`to_row`) and its statement the ``stored`` time ``stored``; with
    ``lrs_timestamp`` (the client gave no timestamp), the timestamp too."""
    statement = row["raw"]
    statement["stored"] = _stored_text(stored)
    row["stored"] = _naive(stored)
    if lrs_timestamp:
        statement["timestamp"] = statement["stored"]
        row["timestamp"] = row["stored"]
        row["day"] = (row["stored"].date() - _EPOCH).days


def same_statement(old: dict, new: dict, *, lrs_timestamp: bool = False) -> bool:
    """Whether ``new`` is the statement ``old`` that is stored: the same but for what the LRS
    sets (stored, authority, version) and, when ``new`` came without one (``lrs_timestamp``),
    the timestamp the LRS gave ``old``."""
    if not lrs_timestamp:
        return canonical(old) == canonical(new)
    return canonical({**old, "timestamp": None}) == canonical({**new, "timestamp": None})


#: what the bounded columns of ``statements`` are made from: (the field, what it is)
_ROW_FIELDS = {
    "verb": ("verb.id", "the verb's IRI"),
    "object_id": ("object", "the object's identifier"),
    "actor_key": ("actor", "the actor's identifier"),
    "learner": ("actor", "the learner (the account's name, else the e-mail address)"),
    "clicks": ("result.extensions", f"the {CLICKS_EXTENSION} extension"),
}
#: the largest whole number of an INTEGER and of a BIGINT column (PostgreSQL's sizes)
_INT_MAX = {Integer: 2**31 - 1, BigInteger: 2**63 - 1}
#: (column, field, what it is, longest string, largest whole number) of each bounded column
_BOUNDS = [
    (c.name, *_ROW_FIELDS.get(c.name, (c.name, c.name)), getattr(c.type, "length", None),
     _INT_MAX.get(type(c.type)))
    for c in Statement.__table__.columns
    if getattr(c.type, "length", None) or type(c.type) in _INT_MAX
]  # fmt: skip


def check_row(row: dict, path: str = "statement") -> dict:
    """``row`` (of :func:`to_row`) if the ``statements`` table can hold it, else
    :class:`StatementError`: a string longer than its column, a whole number beyond it."""
    for name, field, what, length, top in _BOUNDS:
        value = row.get(name)
        if length and isinstance(value, str) and len(value) > length:
            _fail(
                f"{path}.{field}",
                f"{what} is {len(value)} characters long; this LRS stores at most {length}",
            )
        if top and isinstance(value, int) and not -top - 1 <= value <= top:
            _fail(f"{path}.{field}", f"{what}: {value} is out of range (at most {top})")
    return row


# --------------------------------------------------------------------------- reading back


def accepted_languages(header: str | None) -> list[str]:
    """The language ranges of an ``Accept-Language`` header, most wanted first."""
    ranges = []
    for n, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if tag and q > 0:
            ranges.append((-q, n, tag.strip().lower()))
    return [tag for _, _, tag in sorted(ranges)]


def _one_language(value: dict, languages: list[str]) -> dict:
    """The entry of language map ``value`` that best matches ``languages`` (else its first)."""
    if not value:
        return value
    tags = {tag.lower(): tag for tag in value}
    for wanted in languages:
        if wanted == "*":
            break
        for tag_lower, tag in tags.items():
            if tag_lower == wanted or tag_lower.startswith(wanted + "-"):
                return {tag: value[tag]}
        for tag_lower, tag in tags.items():  # en-GB wanted, en given
            if wanted.startswith(tag_lower + "-"):
                return {tag: value[tag]}
    first = next(iter(value))
    return {first: value[first]}


_LANGUAGE_MAPS = {"display", "name", "description"}


def _canonical_languages(value, languages: list[str], key: str | None = None):
    if isinstance(value, dict):
        if key in _LANGUAGE_MAPS and all(isinstance(v, str) for v in value.values()):
            return _one_language(value, languages)
        return {
            k: v if k == "extensions" else _canonical_languages(v, languages, k)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_canonical_languages(v, languages) for v in value]
    return value


def _ids_agent(agent: dict) -> dict:
    out = {"objectType": agent.get("objectType", "Agent")}
    for key in _IFIS:
        if key in agent:
            out[key] = agent[key]
            return out
    out["member"] = [_ids_agent(m) for m in agent.get("member", ())]
    return out


def _ids_object(obj: dict) -> dict:
    kind = obj.get("objectType", "Activity")
    if kind == "Activity":
        return {"objectType": "Activity", "id": obj["id"]}
    if kind in ("Agent", "Group"):
        return _ids_agent(obj)
    if kind == "SubStatement":
        return {"objectType": "SubStatement", **_ids_body(obj)}
    return obj


def _ids_body(statement: dict) -> dict:
    out = {k: v for k, v in statement.items() if k != "objectType"}
    out["actor"] = _ids_agent(statement["actor"])
    out["verb"] = {"id": statement["verb"]["id"]}
    out["object"] = _ids_object(statement["object"])
    if "authority" in statement:
        out["authority"] = _ids_agent(statement["authority"])
    context = statement.get("context")
    if context:
        context = dict(context)
        for key in ("instructor", "team"):
            if key in context:
                context[key] = _ids_agent(context[key])
        if "contextActivities" in context:
            context["contextActivities"] = {
                key: [_ids_object(a) for a in acts]
                for key, acts in context["contextActivities"].items()
            }
        out["context"] = context
    return out


def formatted(statement: dict, fmt: str = "exact", languages: list[str] = ()) -> dict:
    """``statement`` in the GET ``format`` (xAPI 1.0.3, Communication 2.1.3): ``exact`` as
    stored; ``ids`` with Agents, Groups, Activities and Verbs reduced to their identifiers
    (an anonymous Group to its members' identifiers: XAPI-00169); ``canonical`` with one
    language per language map, the best match of ``languages`` (an ``Accept-Language``
    header's, :func:`accepted_languages`), else the map's first (XAPI-00171, -00172)."""
    if fmt == "ids":
        return _ids_body(statement)
    if fmt == "canonical":
        return _canonical_languages(statement, list(languages))
    return statement


# --------------------------------------------------------------------------- Activities, Agents

#: the properties of an Activity definition whose values are merged key by key
_MERGED = {"name", "description", "extensions"}


def merge_definition(into: dict, definition: dict) -> dict:
    """Fold an Activity ``definition`` seen later into ``into``: language maps (``name``,
    ``description``) and ``extensions`` gain its entries, every other property takes its
    value (xAPI 1.0.3, Communication 2.5: the Activity "contains all available information
    about an activity from any statements": XAPI-00254)."""
    for key, value in definition.items():
        if key in _MERGED and isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key] = {**into[key], **value}
        else:
            into[key] = value
    return into


def person(agent: dict, names: list[str] = ()) -> dict:
    """The Person object of the Agents resource for ``agent`` (an Agent): its identifier and
    ``names`` (the names statements gave it, then its own), each property a list (xAPI 1.0.3,
    Communication 2.4). Personas are not joined: this LRS knows one identifier per Agent."""
    out: dict = {"objectType": "Person"}
    seen = list(dict.fromkeys([*([agent["name"]] if "name" in agent else []), *names]))
    if seen:
        out["name"] = seen
    for key in _IFIS:
        if key in agent:
            out[key] = [agent[key]]
    return out
