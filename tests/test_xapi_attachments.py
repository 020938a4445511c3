"""Statements with attachments (multipart/mixed) and signed statements, over real HTTP, on
SQLite and PostgreSQL; and the rest of issue #13 defect 6: registration, HEAD, the
alternate request syntax, X-Experience-API-Consistent-Through on refusals.

Signatures are made here with a fresh RSA key and a self-signed X.509 certificate
(``cryptography``), signed by PyJWT, as a Learning Record Provider would make them.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
import uuid
from urllib.parse import urlencode

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.events_fixtures import postgres_url, two_courses_lms  # noqa: F401
from tests.test_xapi import ACTIVITY, assert_error

lms = two_courses_lms()

SIGNATURE = "http://adlnet.gov/expapi/attachments/signature"


def attachment(
    data: bytes, content_type: str = "text/plain", usage: str = "https://example.org/usage/essay"
) -> dict:
    return {
        "usageType": usage,
        "display": {"en": "the essay"},
        "contentType": content_type,
        "length": len(data),
        "sha2": hashlib.sha256(data).hexdigest(),
    }


def multipart(
    statements, parts: list[tuple[bytes, dict]], boundary: str = "xapi-boundary-1"
) -> tuple[bytes, dict]:
    """A multipart/mixed body: the statements (JSON) and each (data, headers) part."""
    out = [
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode(),
        json.dumps(statements).encode(),
        b"\r\n",
    ]
    for data, headers in parts:
        out.append(f"--{boundary}\r\n".encode())
        out += [f"{k}: {v}\r\n".encode() for k, v in headers.items()]
        out += [b"\r\n", data, b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}


def part_headers(data: bytes, content_type: str = "text/plain") -> dict:
    return {
        "Content-Type": content_type,
        "Content-Transfer-Encoding": "binary",
        "X-Experience-API-Hash": hashlib.sha256(data).hexdigest(),
    }


def with_attachments(*attachments) -> dict:
    s = copy.deepcopy(ACTIVITY)
    s["id"] = str(uuid.uuid4())
    s["attachments"] = list(attachments)
    return s


def parse_answer(r) -> tuple[dict, dict[str, bytes]]:
    """A multipart/mixed answer: its JSON part, and its attachment parts by hash."""
    from email import message_from_bytes, policy

    head = f"Content-Type: {r.headers['Content-Type']}\r\n\r\n".encode()
    message = message_from_bytes(head + r.content, policy=policy.HTTP)
    first, *rest = message.iter_parts()
    assert first.get_content_type() == "application/json"
    return json.loads(first.get_payload(decode=True)), {
        p["X-Experience-API-Hash"]: p.get_payload(decode=True) for p in rest
    }


async def test_a_statement_with_an_attachment_is_stored_and_read_back_with_its_data(lms):
    """XAPI-00127 / Communication 1.5.2: a multipart/mixed POST stores the statement and
    the attachment's data; GET with attachments=true answers multipart/mixed, the JSON first
    then the data, named by its hash (XAPI-00167); without it, JSON only (XAPI-00161); the
    same data in another course's request is that course's own."""
    lrs = lms["ds101"]
    data = b"An essay on entropy.\r\n--not-a-boundary\r\n\x00\xff binary too"
    s = with_attachments(attachment(data))
    body, headers = multipart([s], [(data, part_headers(data))])
    r = await lrs.post("/statements", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == [s["id"]]
    r = await lrs.get("/statements", params={"statementId": s["id"], "attachments": "true"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("multipart/mixed")
    got, parts = parse_answer(r)
    assert got["id"] == s["id"] and got["attachments"] == s["attachments"]
    assert parts == {hashlib.sha256(data).hexdigest(): data}
    plain = await lrs.get("/statements", params={"statementId": s["id"]})
    assert plain.headers["Content-Type"].startswith("application/json")
    listed = await lrs.get("/statements", params={"attachments": "true", "limit": "1"})
    assert parse_answer(listed)[1] == parts
    # another course's source neither sees the statement nor the data
    other = await lms["stat200"].get("/statements", params={"attachments": "true"})
    assert parse_answer(other) == ({"statements": [], "more": ""}, {})


BAD_MULTIPART = {  # what: (statements' attachments, parts, in the message)
    "XAPI-00129 an attachment without fileUrl in application/json": ("json", "no fileUrl"),
    "XAPI-00131 no boundary": ("no-boundary", "boundary"),
    "XAPI-00134 first part not JSON": ("first-not-json", "first part"),
    "XAPI-00135 a part without X-Experience-API-Hash": ("no-hash", "X-Experience-API-Hash"),
    "XAPI-00132 a part without Content-Transfer-Encoding binary": ("no-cte", "Content-Transfer-Encoding"),
    "XAPI-00128 a part no statement uses": ("extra-part", "no statement's attachment"),
    "a part whose data do not match its hash": ("bad-hash", "do not hash"),
    "an attachment whose part is missing": ("missing-part", "no part of the request"),
}  # fmt: skip


@pytest.mark.parametrize("what", sorted(BAD_MULTIPART))
async def test_malformed_attachment_requests_get_400_and_store_nothing(lms, what):
    lrs = lms["ds101"]
    case, says = BAD_MULTIPART[what]
    data = b"some data " + uuid.uuid4().bytes
    s = with_attachments(attachment(data))
    headers = part_headers(data)
    parts = [(data, headers)]
    content_type = None
    if case == "json":
        r = await lrs.post("/statements", json=s)
    else:
        if case == "no-hash":
            del headers["X-Experience-API-Hash"]
        elif case == "no-cte":
            del headers["Content-Transfer-Encoding"]
        elif case == "extra-part":
            extra = b"extra"
            parts.append((extra, part_headers(extra)))
        elif case == "bad-hash":
            parts = [(data + b"!", headers)]
        elif case == "missing-part":
            parts = []
        body, h = multipart([s], parts)
        if case == "no-boundary":
            h = {"Content-Type": "multipart/mixed"}
        elif case == "first-not-json":
            body = body.replace(b"Content-Type: application/json", b"Content-Type: text/plain", 1)
        content_type = h
        r = await lrs.post("/statements", content=body, headers=content_type)
    body = assert_error(r, 400, "bad_request")
    assert says in body["message"], body
    assert (await lrs.get("/statements", params={"statementId": s["id"]})).status_code == 404


def signer():
    """An RSA key and a self-signed certificate for it (what a signing LRP holds)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lms.example.org")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    return key, x5c


@pytest.fixture(scope="module")
def keys():
    return signer(), signer()


def signed(
    statement: dict, key, x5c: str | None, *, algorithm: str = "RS256", payload: dict | None = None
):
    """``statement`` with its signature attachment, and the multipart body carrying it."""
    headers = {"x5c": [x5c]} if x5c else {}
    token = jwt.encode(payload or statement, key, algorithm=algorithm, headers=headers).encode()
    s = copy.deepcopy(statement)
    s.setdefault("attachments", []).append(attachment(token, "application/octet-stream", SIGNATURE))
    return s, multipart([s], [(token, part_headers(token, "application/octet-stream"))])


async def test_a_signed_statement_is_accepted_and_read_back_with_its_signature(lms, keys):
    """XAPI-00115 to -00117: a JWS (RS256, its certificate in x5c) whose payload is the
    statement is accepted; GET with attachments=true gives the JWS back."""
    (key, x5c), _ = keys
    statement = {**copy.deepcopy(ACTIVITY), "id": str(uuid.uuid4())}
    s, (body, headers) = signed(statement, key, x5c)
    r = await lms["ds101"].post("/statements", content=body, headers=headers)
    assert r.status_code == 200, r.text
    r = await lms["ds101"].get(
        "/statements", params={"statementId": s["id"], "attachments": "true"}
    )
    got, parts = parse_answer(r)
    (token,) = parts.values()
    assert jwt.decode(token, key.public_key(), algorithms=["RS256"]) == statement


@pytest.mark.parametrize(
    "what", ["HS256", "payload of another statement", "signed with another key", "not a JWS"]
)
async def test_a_malformed_signature_is_refused(lms, keys, what):
    """Data 2.6, LRS requirements: an algorithm other than RS256/384/512 (XAPI-00117), a
    payload that is not the statement (XAPI-00116), a signature that the x5c certificate
    does not verify, a part that is no JWS: 400, nothing stored."""
    (key, x5c), (other_key, _) = keys
    statement = {**copy.deepcopy(ACTIVITY), "id": str(uuid.uuid4())}
    if what == "HS256":
        s, (body, headers) = signed(
            statement, "a shared secret of 32 bytes or more!", None, algorithm="HS256"
        )
    elif what == "payload of another statement":
        s, (body, headers) = signed(
            statement, key, x5c, payload={**statement, "verb": {"id": "http://x.org/v"}}
        )
    elif what == "signed with another key":
        s, (body, headers) = signed(statement, other_key, x5c)
    else:
        token = b"not.a.jws"
        s = {**statement, "attachments": [attachment(token, "application/octet-stream", SIGNATURE)]}
        body, headers = multipart([s], [(token, part_headers(token, "application/octet-stream"))])
    body_ = assert_error(
        await lms["ds101"].post("/statements", content=body, headers=headers), 400, "bad_request"
    )
    assert "attachments[0]" in body_["message"], body_
    assert (
        await lms["ds101"].get("/statements", params={"statementId": s["id"]})
    ).status_code == 404


# --------------------------------------------------------------------------- the rest of defect 6


async def test_the_registration_filter(lms):
    """XAPI-00178: registration filters by context.registration (any case)."""
    lrs = lms["ds101"]
    reg = str(uuid.uuid4())
    s = copy.deepcopy(ACTIVITY)
    s["context"]["registration"] = reg.upper()
    (sid,) = (await lrs.post("/statements", json=s)).json()
    await lrs.post("/statements", json=copy.deepcopy(ACTIVITY))
    r = await lrs.get("/statements", params={"registration": reg})
    assert [x["id"] for x in r.json()["statements"]] == [sid]
    assert_error(await lrs.get("/statements", params={"registration": "nope"}), 400, "bad_request")


async def test_head_answers_as_get_without_a_body(lms):
    """XAPI-00125, -00126: HEAD on statements (one, a query), about: GET's status and
    headers, no body; a HEAD of a missing statement is 404."""
    lrs = lms["ds101"]
    (sid,) = (await lrs.post("/statements", json=copy.deepcopy(ACTIVITY))).json()
    for path, params in (
        ("/statements", {"statementId": sid}),
        ("/statements", {"limit": "2"}),
        ("/about", {}),
    ):
        get, head = await lrs.get(path, params=params), await lrs.head(path, params=params)
        assert head.status_code == get.status_code == 200
        assert head.content == b""
        assert head.headers["Content-Type"] == get.headers["Content-Type"]
    missing = await lrs.head("/statements", params={"statementId": str(uuid.uuid4())})
    assert missing.status_code == 404 and missing.content == b""


async def test_the_alternate_request_syntax(lms):
    """XAPI-00336, -00148: POST ?method=PUT|GET|... with the headers, the parameters and
    the content as form fields does what the request it stands for does; another query
    parameter beside method is refused."""
    lrs = lms["ds101"]
    sid = str(uuid.uuid4())
    # the source's credentials, to go in the form rather than in the request's header
    header = next(lrs.auth.auth_flow(lrs.build_request("GET", "/about"))).headers["Authorization"]
    form = {
        "Authorization": header,
        "X-Experience-API-Version": "1.0.3",
        "Content-Type": "application/json",
        "statementId": sid,
        "content": json.dumps(ACTIVITY),
    }
    form_type = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Experience-API-Version": "",
    }
    r = await lrs.post(
        "/statements?method=PUT", content=urlencode(form), headers=form_type, auth=None
    )
    assert r.status_code == 204, r.text
    get = {"Authorization": header, "X-Experience-API-Version": "1.0.3", "statementId": sid}
    r = await lrs.post(
        "/statements?method=GET", content=urlencode(get), headers=form_type, auth=None
    )
    assert r.status_code == 200 and r.json()["id"] == sid
    r = await lrs.post("/statements?method=GET", content=urlencode({**get, "statementId": str(uuid.uuid4())}),
                       headers=form_type, auth=None)  # fmt: skip
    assert_error(r, 404, "not_found")
    r = await lrs.post(
        f"/statements?method=GET&statementId={sid}",
        content=urlencode(get),
        headers=form_type,
        auth=None,
    )
    assert "form field" in assert_error(r, 400, "bad_request")["message"]
    r = await lrs.post(
        "/statements?method=PATCH", content=urlencode(get), headers=form_type, auth=None
    )
    assert_error(r, 400, "bad_request")
    # without the credentials in the form: 401, as without the header
    r = await lrs.post("/statements?method=GET", content=urlencode({"statementId": sid, "X-Experience-API-Version": "1.0.3"}),
                       headers=form_type, auth=None)  # fmt: skip
    assert_error(r, 401, "unauthorized")
    # documents too
    state = {"Authorization": header, "X-Experience-API-Version": "1.0.3", "Content-Type": "application/json",
             "activityId": "https://lms.example.org/alt", "agent": json.dumps({"mbox": "mailto:alt@example.org"}),
             "stateId": "s", "content": '{"x": 1}'}  # fmt: skip
    r = await lrs.post(
        "/activities/state?method=PUT", content=urlencode(state), headers=form_type, auth=None
    )
    assert r.status_code == 204, r.text
    r = await lrs.get(
        "/activities/state", params={k: state[k] for k in ("activityId", "agent", "stateId")}
    )
    assert r.json() == {"x": 1}


@pytest.mark.parametrize("status", [400, 401])
async def test_consistent_through_is_on_refused_statement_gets_too(lms, status):
    """XAPI-00153: the header is on every answer to a statements GET, a 400 or 401 too."""
    lrs = lms["ds101"]
    if status == 400:
        r = await lrs.get("/statements", params={"limit": "many"})
    else:
        r = await lrs.get("/statements", auth=None)
    assert_error(r, status, "bad_request" if status == 400 else "unauthorized")
    moment = r.headers["X-Experience-API-Consistent-Through"]
    assert dt.datetime.fromisoformat(moment.replace("Z", "+00:00")).tzinfo is not None
