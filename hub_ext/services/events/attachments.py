"""xAPI 1.0.3 attachments: ``multipart/mixed`` statement requests and answers, and the
structure of signed statements (pure functions, no I/O).

A statement request with attachments is ``multipart/mixed`` (RFC 2046; xAPI 1.0.3,
Communication 1.5.2): the first part holds the statements (``application/json``), each
other part the raw data of an attachment, with ``Content-Transfer-Encoding: binary`` and
``X-Experience-API-Hash`` (the ``sha2`` of the attachment it is). :func:`parse_multipart`
reads such a body with the standard library's MIME parser (:mod:`email`) and checks what
the specification requires; :func:`check_attachments` then matches the statements'
attachments with the parts: each attachment without a ``fileUrl`` needs its part, each part
an attachment, and a part's data must hash to its declared ``sha2``.

**Signed statements** (Data 2.6) carry a JWS (RFC 7515) as an attachment of usageType
:data:`SIGNATURE`. :func:`check_signature` does what the LRS must: decode it (PyJWT),
refuse an algorithm other than RS256, RS384 or RS512, compare its payload with the
statement (the same statement, but for the signature attachment and what the LRS sets),
and, when the JWS header holds an X.509 certificate chain (``x5c``), verify the signature
with the first certificate's key. That is a check of the signature's form, as the
specification means it, not of who signed: no certificate is trusted for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from email import message_from_bytes, policy

import jwt
from cryptography import x509

from .xapi import StatementError, canonical

__all__ = [
    "SIGNATURE",
    "Part",
    "attachments_of",
    "check_attachments",
    "check_signature",
    "multipart_answer",
    "parse_multipart",
]

#: the usageType of a statement's signature attachment
SIGNATURE = "http://adlnet.gov/expapi/attachments/signature"
_ALGORITHMS = ("RS256", "RS384", "RS512")
#: the SHA-2 functions a ``sha2`` may be, by the length of its hexadecimal digest
_SHA2 = {56: hashlib.sha224, 64: hashlib.sha256, 96: hashlib.sha384, 128: hashlib.sha512}


@dataclass(frozen=True, slots=True)
class Part:
    """The raw data of one attachment, as received or stored."""

    sha2: str
    content_type: str
    content: bytes


def parse_multipart(content_type: str, body: bytes) -> tuple[bytes, dict[str, Part]]:
    """The statements part (JSON text) and the attachment parts by ``sha2`` (lowercase) of
    a ``multipart/mixed`` body; :class:`StatementError` says what is wrong (XAPI-00128,
    -00130 to -00135)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = message_from_bytes(head + body, policy=policy.HTTP)
    if not message.get_param("boundary"):
        raise StatementError("Content-Type", "multipart/mixed needs a boundary parameter")
    parts = list(message.iter_parts()) if message.is_multipart() else []
    if not parts or message.defects:
        raise StatementError(
            "body", "is not a multipart/mixed body with parts between its boundary lines"
        )
    first, *rest = parts
    if first.get_content_type() != "application/json":
        raise StatementError(
            "body",
            "the first part of a multipart/mixed request holds the statements: application/json",
        )
    found: dict[str, Part] = {}
    for i, part in enumerate(rest, start=1):
        where = f"part {i + 1}"
        declared = (part.get("X-Experience-API-Hash") or "").strip().lower()
        if not declared:
            raise StatementError(where, "an attachment part needs an X-Experience-API-Hash header")
        if (part.get("Content-Transfer-Encoding") or "").strip().lower() != "binary":
            raise StatementError(
                where, "an attachment part needs Content-Transfer-Encoding: binary"
            )
        data = part.get_payload(decode=True) or b""
        digest = _SHA2.get(len(declared))
        if digest is None or digest(data).hexdigest() != declared:
            raise StatementError(
                where, f"its data do not hash to its X-Experience-API-Hash {declared[:16]}..."
            )
        found[declared] = Part(declared, part.get_content_type(), data)
    return first.get_payload(decode=True) or b"", found


def attachments_of(statement: dict):
    """The attachments of ``statement`` and of its SubStatement."""
    yield from statement.get("attachments") or ()
    obj = statement.get("object")
    if isinstance(obj, dict) and obj.get("objectType") == "SubStatement":
        yield from obj.get("attachments") or ()


def check_attachments(statements: list[dict], parts: dict[str, Part], *, batch: bool) -> list[Part]:
    """The parts the ``statements`` use; :class:`StatementError` when an attachment has
    neither a ``fileUrl`` nor a part, or a part is no statement's (XAPI-00128, -00129)."""
    used: dict[str, Part] = {}
    for i, statement in enumerate(statements):
        where = f"statements[{i}]" if batch else "statement"
        for j, attachment in enumerate(attachments_of(statement)):
            sha2 = str(attachment.get("sha2", "")).lower()
            if sha2 in parts:
                used[sha2] = parts[sha2]
            elif "fileUrl" not in attachment:
                raise StatementError(
                    f"{where}.attachments[{j}]",
                    "has no fileUrl and no part of the request holds its data (send the "
                    "data as a multipart/mixed part with X-Experience-API-Hash: its sha2)",
                )
            if attachment.get("usageType") == SIGNATURE and sha2 in parts:
                check_signature(statement, parts[sha2], f"{where}.attachments[{j}]")
    unused = sorted(parts.keys() - used.keys())
    if unused:
        raise StatementError(
            "body",
            f"the part with X-Experience-API-Hash {unused[0][:16]}... is no statement's attachment",
        )
    return list(used.values())


def check_signature(statement: dict, part: Part, path: str) -> None:
    """Check a signed statement's JWS as xAPI 1.0.3, Data 2.6 says (see the module's
    docstring); :class:`StatementError` naming ``path`` when it is malformed."""
    if part.content_type != "application/octet-stream":
        raise StatementError(path, "a signature's contentType is application/octet-stream")
    token = part.content.strip()
    try:
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        if algorithm not in _ALGORITHMS:
            raise StatementError(
                path, f"the JWS algorithm is {algorithm!r}; xAPI takes {', '.join(_ALGORITHMS)}"
            )
        key, verify = "", False
        if header.get("x5c"):
            chain = header["x5c"]
            if not isinstance(chain, list) or not isinstance(chain[0], str):
                raise StatementError(path, "the JWS header's x5c is not a certificate chain")
            key, verify = (
                x509.load_der_x509_certificate(base64.b64decode(chain[0])).public_key(),
                True,
            )
        decoded = jwt.api_jws.decode_complete(
            token, key=key, algorithms=list(_ALGORITHMS), options={"verify_signature": verify}
        )
        signed = json.loads(decoded["payload"])
    except StatementError:
        raise
    except (jwt.InvalidTokenError, ValueError, TypeError, binascii.Error, IndexError) as e:
        raise StatementError(path, f"the signature is not a valid JWS ({e})") from None
    if not isinstance(signed, dict) or _unsigned(signed) != _unsigned(statement):
        raise StatementError(
            path, "the JWS payload is not this statement (as it was before it was signed)"
        )


def _unsigned(statement: dict) -> str:
    """``statement`` as compared with a JWS payload: without its signature attachments and
    what the LRS sets (stored, authority, version)."""
    body = dict(statement)
    attachments = [a for a in statement.get("attachments") or () if a.get("usageType") != SIGNATURE]
    body.pop("attachments", None)
    if attachments:
        body["attachments"] = attachments
    return canonical(body)


def multipart_answer(body: bytes, parts: list[Part], boundary: str) -> bytes:
    """A ``multipart/mixed`` answer: ``body`` (JSON) first, then each attachment part."""
    chunks = [f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode(), body, b"\r\n"]
    for part in parts:
        chunks += [
            f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
            f"Content-Transfer-Encoding: binary\r\nX-Experience-API-Hash: {part.sha2}\r\n\r\n".encode(),
            part.content,
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)
