"""xAPI 1.0.3 statements: validation and the mapping to a store row (pure functions).

:func:`validate_statement` checks a statement the way the specification's "Statement
Requirements" (xAPI 1.0.3, Part Two, section 2) describe: only the properties it names, an
actor with exactly one identifier, IRIs where IRIs are required, ISO 8601 timestamps and
durations, language maps, score ranges, the five object types (Activity, Agent, Group,
StatementRef, SubStatement). The first problem found is raised as :class:`StatementError`
with the JSON path of the bad field, e.g. ``statements[3].verb.id: 'bad' is not an IRI``.

:func:`to_row` turns a validated statement into the dict the ``statements`` table takes.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime
from typing import Any

__all__ = [
    "CLICKS_EXTENSION",
    "COURSE_IRI_PREFIX",
    "StatementError",
    "actor_key",
    "canonical",
    "course_iri",
    "parse_timestamp",
    "to_row",
    "validate_agent",
    "validate_statement",
    "VERSION",
]

VERSION = "1.0.3"
#: result extension holding how many interactions a statement stands for (OULAD's sum_click)
CLICKS_EXTENSION = "urn:hub-ext:xapi:clicks"
#: an activity in context.contextActivities (grouping or parent) with this prefix names the course
COURSE_IRI_PREFIX = "urn:hub-ext:course:"
VOIDED = "http://adlnet.gov/expapi/verbs/voided"

_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+$")
_MBOX = re.compile(r"^mailto:[^@\s]+@[^@\s]+$")
_SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")
_LANG = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")
_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?$"
)
_DURATION = re.compile(
    r"^P(?=\d|T\d)(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?"
    r"(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?$"
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

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


def _str(value, path: str) -> str:
    if not isinstance(value, str):
        _fail(path, f"must be a string, not {type(value).__name__}")
    return value


def _iri(value, path: str) -> str:
    if not isinstance(value, str) or not _IRI.match(value):
        _fail(path, f"{value!r} is not an IRI (an absolute identifier such as http://...)")
    return value


def _uuid(value, path: str) -> str:
    if not isinstance(value, str) or not _UUID.match(value):
        _fail(path, f"{value!r} is not a UUID")
    return value


def _bool(value, path: str) -> bool:
    if not isinstance(value, bool):
        _fail(path, f"must be true or false, not {value!r}")
    return value


def _number(value, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(path, f"must be a number, not {value!r}")
    return value


def _language_map(value, path: str) -> None:
    if not isinstance(value, dict):
        _fail(path, "must be a language map (an object of language tag -> string)")
    for tag, text in value.items():
        if not _LANG.match(tag):
            _fail(path, f"{tag!r} is not a language tag (RFC 5646), e.g. en-US")
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
    except ValueError:
        _fail(path, f"{value!r} is not a valid date and time")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


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
    if "name" in value:
        _str(value["name"], f"{path}.name")
    if "mbox" in value and (not isinstance(value["mbox"], str) or not _MBOX.match(value["mbox"])):
        _fail(
            f"{path}.mbox", f"{value['mbox']!r} is not a mailto: IRI such as mailto:ada@example.org"
        )
    if "mbox_sha1sum" in value and (
        not isinstance(value["mbox_sha1sum"], str) or not _SHA1.match(value["mbox_sha1sum"])
    ):
        _fail(f"{path}.mbox_sha1sum", "must be 40 hexadecimal digits")
    if "openid" in value:
        _iri(value["openid"], f"{path}.openid")
    if "account" in value:
        account = _obj(
            value["account"], f"{path}.account", {"homePage", "name"}, ("homePage", "name")
        )
        _iri(account["homePage"], f"{path}.account.homePage")
        _str(account["name"], f"{path}.account.name")
    return value


def validate_agent(value: Any, path: str = "agent") -> dict:
    """Check an Agent or Group (e.g. the ``agent`` parameter of a statements query)."""
    return _agent(value, path)


def _verb(value, path: str) -> dict:
    _obj(value, path, {"id", "display"}, ("id",))
    _iri(value["id"], f"{path}.id")
    if "display" in value:
        _language_map(value["display"], f"{path}.display")
    return value


def _activity(value, path: str) -> dict:
    _obj(value, path, {"objectType", "id", "definition"}, ("id",))
    _iri(value["id"], f"{path}.id")
    if "definition" in value:
        d = _obj(value["definition"], f"{path}.definition", _ACTIVITY_DEF_KEYS)
        for key in ("name", "description"):
            if key in d:
                _language_map(d[key], f"{path}.definition.{key}")
        for key in ("type", "moreInfo"):
            if key in d:
                _iri(d[key], f"{path}.definition.{key}")
        if "extensions" in d:
            _extensions(d["extensions"], f"{path}.definition.extensions")
        if "interactionType" in d and d["interactionType"] not in _INTERACTION_TYPES:
            _fail(
                f"{path}.definition.interactionType",
                f"{d['interactionType']!r} is not an interaction type",
            )
        if "correctResponsesPattern" in d:
            pattern = d["correctResponsesPattern"]
            if not isinstance(pattern, list) or not all(isinstance(p, str) for p in pattern):
                _fail(f"{path}.definition.correctResponsesPattern", "must be a list of strings")
    return value


def _statement_ref(value, path: str) -> dict:
    _obj(value, path, {"objectType", "id"}, ("objectType", "id"))
    _uuid(value["id"], f"{path}.id")
    return value


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


def _result(value, path: str) -> None:
    _obj(value, path, {"score", "success", "completion", "response", "duration", "extensions"})
    if "score" in value:
        score = _obj(value["score"], f"{path}.score", {"scaled", "raw", "min", "max"})
        for key in score:
            _number(score[key], f"{path}.score.{key}")
        if "scaled" in score and not -1 <= score["scaled"] <= 1:
            _fail(f"{path}.score.scaled", f"{score['scaled']} is not between -1 and 1")
        if "min" in score and "max" in score and score["min"] > score["max"]:
            _fail(f"{path}.score.min", f"min {score['min']} is greater than max {score['max']}")
        if "raw" in score:
            if "min" in score and score["raw"] < score["min"]:
                _fail(f"{path}.score.raw", f"{score['raw']} is below min {score['min']}")
            if "max" in score and score["raw"] > score["max"]:
                _fail(f"{path}.score.raw", f"{score['raw']} is above max {score['max']}")
    for key in ("success", "completion"):
        if key in value:
            _bool(value[key], f"{path}.{key}")
    if "response" in value:
        _str(value["response"], f"{path}.response")
    if "duration" in value and (
        not isinstance(value["duration"], str) or not _DURATION.match(value["duration"])
    ):
        _fail(
            f"{path}.duration", f"{value['duration']!r} is not an ISO 8601 duration such as PT4M30S"
        )
    if "extensions" in value:
        _extensions(value["extensions"], f"{path}.extensions")


def _context(value, path: str, object_kind: str) -> None:
    _obj(value, path, _CONTEXT_KEYS)
    if "registration" in value:
        _uuid(value["registration"], f"{path}.registration")
    if "instructor" in value:
        _agent(value["instructor"], f"{path}.instructor")
    if "team" in value:
        team = _agent(value["team"], f"{path}.team")
        if team.get("objectType") != "Group":
            _fail(f"{path}.team", "must be a Group")
    if "contextActivities" in value:
        ca = _obj(
            value["contextActivities"],
            f"{path}.contextActivities",
            {"parent", "grouping", "category", "other"},
        )
        for key, acts in ca.items():
            items = acts if isinstance(acts, list) else [acts]
            for i, act in enumerate(items):
                _activity(act, f"{path}.contextActivities.{key}[{i}]")
    for key in ("revision", "platform"):
        if key in value:
            _str(value[key], f"{path}.{key}")
            if object_kind != "Activity":
                _fail(f"{path}.{key}", "only allowed when the object is an Activity")
    if "language" in value:
        if not isinstance(value["language"], str) or not _LANG.match(value["language"]):
            _fail(f"{path}.language", f"{value['language']!r} is not a language tag (RFC 5646)")
    if "statement" in value:
        _statement_ref(value["statement"], f"{path}.statement")
    if "extensions" in value:
        _extensions(value["extensions"], f"{path}.extensions")


def _body(value: dict, path: str, *, sub: bool = False) -> None:
    _agent(value["actor"], f"{path}.actor")
    _verb(value["verb"], f"{path}.verb")
    obj = _object(value["object"], f"{path}.object", sub=sub)
    kind = obj.get("objectType", "Activity")
    if value["verb"]["id"] == VOIDED and not sub and kind != "StatementRef":
        _fail(f"{path}.object", "a voiding statement's object must be a StatementRef")
    if "result" in value:
        _result(value["result"], f"{path}.result")
    if "context" in value:
        _context(value["context"], f"{path}.context", kind)
    if "timestamp" in value:
        parse_timestamp(value["timestamp"], f"{path}.timestamp")
    if "attachments" in value:
        if not isinstance(value["attachments"], list):
            _fail(f"{path}.attachments", "must be a list")
        for i, att in enumerate(value["attachments"]):
            a = _obj(
                att,
                f"{path}.attachments[{i}]",
                {"usageType", "display", "description", "contentType", "length", "sha2", "fileUrl"},
                ("usageType", "display", "contentType", "length", "sha2"),
            )
            if "fileUrl" not in a:
                _fail(
                    f"{path}.attachments[{i}]",
                    "attachments sent in the request (multipart/mixed) are not supported; give a fileUrl",
                )


def validate_statement(value: Any, path: str = "statement") -> dict:
    """Check one statement; raise :class:`StatementError` naming the first bad field."""
    _obj(value, path, _STATEMENT_KEYS, ("actor", "verb", "object"))
    if "id" in value:
        _uuid(value["id"], f"{path}.id")
    if "version" in value:
        if not isinstance(value["version"], str) or not re.match(
            r"^1\.0(\.\d+)?$", value["version"]
        ):
            _fail(f"{path}.version", f"{value['version']!r} is not a 1.0.x version")
    if "stored" in value:
        parse_timestamp(value["stored"], f"{path}.stored")
    if "authority" in value:
        _agent(value["authority"], f"{path}.authority")
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
    ca = (statement.get("context") or {}).get("contextActivities") or {}
    for key in ("grouping", "parent", "other", "category"):
        acts = ca.get(key) or []
        for act in acts if isinstance(acts, list) else [acts]:
            iri = act.get("id", "")
            if iri.startswith(COURSE_IRI_PREFIX):
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
    statement.setdefault("id", str(uuid.uuid4()))
    statement["id"] = statement["id"].lower()
    moment = timestamp or (
        parse_timestamp(statement["timestamp"]) if "timestamp" in statement else stored
    )
    if "timestamp" not in statement:
        statement["timestamp"] = moment.isoformat().replace("+00:00", "Z")
    statement["stored"] = _stored_text(stored)
    statement["version"] = VERSION
    obj = statement["object"]
    kind = obj.get("objectType", "Activity")
    if kind in ("Agent", "Group"):
        object_id = actor_key(obj)
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
    }
