"""Check an annotated notebook before anything runs it.

A notebook becomes a JSON API the way jupyter-kernel-gateway's ``notebook-http`` mode
reads it: a code cell whose source *starts* with ``# GET /learners/:id`` (verbs GET, PUT,
POST, DELETE) answers that route; ``# ResponseInfo GET /learners/:id`` sets the status and
headers of the answer; every other code cell is a *setup* cell, run once when a kernel
starts. The gateway itself accepts nearly anything and fails later (a duplicate route runs
both cells; ``# PATCH /x`` silently becomes a setup cell; a cell that does not compile
makes every request hang). :func:`check_notebook` refuses those up front, each with its
own message naming the cell (1-based, counting every cell as Jupyter shows them) and its
first line.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import nbformat

__all__ = [
    "SUPPORTED_VERBS",
    "CheckedNotebook",
    "NotebookError",
    "NotebookProblem",
    "Route",
    "check_notebook",
    "load_notebook",
]

#: The verbs kernel gateway's notebook-http mode serves.
SUPPORTED_VERBS = ("GET", "PUT", "POST", "DELETE")
#: Verbs people write that the gateway does not serve (a cell with one would silently
#: become a setup cell).
_OTHER_VERBS = ("PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE")

# What looks like an annotation to a person (any verb, any case, ResponseInfo or not).
_LOOSE = re.compile(r"#\s*(?P<info>ResponseInfo\s+)?(?P<verb>[A-Za-z]+)\s+(?P<path>/.*)$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.~-]+$")
_PARAM = re.compile(r"^:[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Route:
    """One annotated route: ``verb`` and ``path`` as written, and the cell that serves it."""

    verb: str
    path: str
    cell: int  # 1-based index among all cells
    response_cell: int | None = None

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(s[1:] for s in self.path.split("/") if s.startswith(":"))

    @property
    def shape(self) -> str:
        """The path with parameter names erased: two routes of one shape collide."""
        return "/".join(":" if s.startswith(":") else s for s in self.path.split("/"))

    def matches(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` is this route, else None."""
        want, got = self.path.split("/"), path.split("/")
        if len(want) != len(got):
            return None
        params = {}
        for w, g in zip(want, got, strict=True):
            if w.startswith(":"):
                if not g:
                    return None
                params[w[1:]] = g
            elif w != g:
                return None
        return params

    def as_dict(self) -> dict[str, Any]:
        return {"verb": self.verb, "path": self.path, "cell": self.cell}


@dataclass(frozen=True)
class NotebookProblem:
    """One reason a notebook is refused: which cell, its first line, and what is wrong."""

    source: str
    cell: int | None
    first_line: str
    message: str
    code: str  # machine-readable kind: no-routes, duplicate-route, unsupported-verb, ...

    def __str__(self) -> str:
        if self.cell is None:
            return f"{self.source}: {self.message}"
        return f"{self.source}: cell {self.cell} ({self.first_line!r}): {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "first_line": self.first_line,
            "code": self.code,
            "message": str(self),
        }


class NotebookError(ValueError):
    """A notebook that must not be published; ``problems`` lists everything wrong."""

    def __init__(self, problems: list[NotebookProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class CheckedNotebook:
    """A notebook that passed :func:`check_notebook`, with what the gateway will serve."""

    source: str
    routes: tuple[Route, ...]
    setup_cells: tuple[int, ...]
    kernel_name: str
    language: str
    version: str  # hash of the code cells and kernel: the cache key's notebook version
    raw: bytes = field(repr=False)

    def route_for(self, verb: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            if route.verb == verb:
                params = route.matches(path)
                if params is not None:
                    return route, params
        return None

    def paths(self) -> set[str]:
        return {r.path for r in self.routes}


@cache
def _gateway_parser():
    """The gateway's own parser of annotations (``#`` comments): what it will serve is
    what it reads. Imported on first use (it imports the whole gateway, about 2 s)."""
    from kernel_gateway.notebook_http.cell.parser import APICellParser

    return APICellParser(comment_prefix="#")


def _first_line(source: str) -> str:
    line = source.strip().splitlines()[0] if source.strip() else ""
    return line if len(line) <= 80 else line[:77] + "..."


def _path_problem(path: str) -> str | None:
    """Why an annotated path cannot be served as written, or None."""
    if " " in path or "\t" in path:
        return f"malformed path {path!r}: a path has no spaces"
    if path == "/":
        return None
    if "?" in path or "#" in path:
        return f"malformed path {path!r}: a route has no query string or fragment"
    if path.endswith("/"):
        return f"malformed path {path!r}: remove the trailing '/'"
    names = []
    for segment in path.split("/")[1:]:
        if segment == "":
            return f"malformed path {path!r}: empty segment ('//')"
        if segment.startswith(":"):
            if not _PARAM.match(segment):
                return (
                    f"malformed path {path!r}: parameter {segment!r} must be ':' and a "
                    "name (letters, digits, _; not starting with a digit)"
                )
            if segment[1:] in names:
                return f"malformed path {path!r}: parameter {segment!r} appears twice"
            names.append(segment[1:])
        elif not _SEGMENT.match(segment):
            return (
                f"malformed path {path!r}: segment {segment!r} may hold only letters, "
                "digits and - _ . ~ (or be a :parameter)"
            )
    return None


def _compile_problem(source: str) -> str | None:
    """The syntax error of a Python cell (IPython magics allowed), or None."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        code = TransformerManager().transform_cell(source)
    except SyntaxError as e:  # pragma: no cover - the transformer rarely raises
        return f"does not compile: {e.msg}"
    try:
        compile(code, "<cell>", "exec")
    except SyntaxError as e:
        where = f"line {e.lineno}: " if e.lineno else ""
        text = f" ({e.text.strip()!r})" if e.text and e.text.strip() else ""
        return f"does not compile: {where}{e.msg}{text}"
    return None


def _version(node, kernel_name: str) -> str:
    """What the API runs, hashed: code cells and kernel (not outputs, ids or metadata)."""
    h = hashlib.sha256(kernel_name.encode())
    for cell in node.cells:
        if cell.get("cell_type") == "code":
            h.update(b"\0" + cell.get("source", "").encode())
    return h.hexdigest()[:16]


def load_notebook(data: bytes | str | Path | dict, source: str | None = None):
    """Read a notebook (a path, its bytes, or its parsed JSON) -> (node, raw bytes, source)."""
    if isinstance(data, Path):
        source = source or str(data)
        raw = data.read_bytes()
    elif isinstance(data, dict):
        raw = json.dumps(data, sort_keys=True).encode()
    elif isinstance(data, str):
        raw = data.encode()
    else:
        raw = bytes(data)
    source = source or "<notebook>"
    try:
        parsed = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NotebookError(
            [
                NotebookProblem(
                    source, None, "", f"not a notebook: invalid JSON ({e})", "not-a-notebook"
                )
            ]
        ) from None
    if not isinstance(parsed, dict) or "cells" not in parsed:
        raise NotebookError(
            [NotebookProblem(source, None, "", "not a notebook: no 'cells' list", "not-a-notebook")]
        )
    try:
        node = nbformat.reads(raw.decode(), as_version=4)
    except Exception as e:
        raise NotebookError(
            [NotebookProblem(source, None, "", f"not a notebook: {e}", "not-a-notebook")]
        ) from None
    return node, raw, source


def check_notebook(data: bytes | str | Path | dict, source: str | None = None) -> CheckedNotebook:
    """Parse the routes of an annotated notebook; raise :class:`NotebookError` if refused.

    Refused, each with its own message naming the cell and its first line: no routes, a
    duplicate route (the same verb and path shape in two cells), an unsupported verb, a
    malformed path, a ResponseInfo cell for a route no cell serves, and (for Python
    notebooks) a cell that does not compile.
    """
    node, raw, source = load_notebook(data, source)
    problems: list[NotebookProblem] = []
    parser = _gateway_parser()

    meta = node.get("metadata", {})
    kernel_name = meta.get("kernelspec", {}).get("name") or ""
    language = (
        meta.get("language_info", {}).get("name")
        or meta.get("kernelspec", {}).get("language")
        or "python"
    ).lower()
    if not kernel_name:
        problems.append(
            NotebookProblem(
                source, None, "", "no kernel named in metadata.kernelspec.name", "no-kernelspec"
            )
        )

    routes: dict[tuple[str, str], Route] = {}
    responses: dict[tuple[str, str], tuple[int, str]] = {}
    setup: list[int] = []
    for index, cell in enumerate(node.cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        text = cell.get("source", "")
        first = _first_line(text)

        def refuse(message: str, code: str, _cell=index, _first=first) -> None:
            problems.append(NotebookProblem(source, _cell, _first, message, code))

        loose = (
            _LOOSE.match(text.split("\n", 1)[0].strip()) if text.lstrip().startswith("#") else None
        )
        kg_api, kg_resp = parser.is_api_cell(text), parser.is_api_response_cell(text)
        if loose is None and not kg_api and not kg_resp:
            setup.append(index)
        elif loose is None:
            # the gateway would take it as a route, but not on its first line as written
            refuse(
                "annotation must be the cell's first line ('# GET /path')", "malformed-annotation"
            )
            continue
        else:
            verb, path = loose["verb"], loose["path"].strip()
            is_response = bool(loose["info"])
            if verb not in SUPPORTED_VERBS:
                hint = (
                    f" (write {verb.upper()!r})"
                    if verb.upper() in SUPPORTED_VERBS
                    else f"; the gateway serves {', '.join(SUPPORTED_VERBS)}"
                )
                refuse(f"unsupported verb {verb!r}{hint}", "unsupported-verb")
                continue
            if not (kg_resp if is_response else kg_api):
                # e.g. '#GET /x': a person reads a route, the gateway a setup cell
                refuse("annotation needs a space after '#' ('# GET /path')", "malformed-annotation")
                continue
            why = _path_problem(path)
            if why:
                refuse(why, "malformed-path")
                continue
            key = (verb, "/".join(":" if s.startswith(":") else s for s in path.split("/")))
            if is_response:
                if key in responses:
                    refuse(
                        f"duplicate ResponseInfo {verb} {path} (cell {responses[key][0]} has it too)",
                        "duplicate-route",
                    )
                    continue
                responses[key] = (index, path)
            else:
                if key in routes:
                    other = routes[key]
                    same = "" if other.path == path else f" as {other.path}"
                    refuse(
                        f"duplicate route {verb} {path} (cell {other.cell} serves it{same})",
                        "duplicate-route",
                    )
                    continue
                routes[key] = Route(verb, path, index)
        if language == "python":
            why = _compile_problem(text)
            if why:
                refuse(why, "does-not-compile")

    for key, (cell_index, path) in responses.items():
        if key in routes:
            r = routes[key]
            routes[key] = Route(r.verb, r.path, r.cell, cell_index)
        else:
            text = node.cells[cell_index - 1].source
            problems.append(
                NotebookProblem(
                    source,
                    cell_index,
                    _first_line(text),
                    f"ResponseInfo for {key[0]} {path}, which no cell serves",
                    "orphan-response",
                )
            )
    if not routes and not any(
        p.code in ("unsupported-verb", "malformed-path", "duplicate-route") for p in problems
    ):
        problems.append(
            NotebookProblem(
                source,
                None,
                "",
                "no routes: no code cell starts with an annotation such as '# GET /learners/:id'",
                "no-routes",
            )
        )
    if problems:
        raise NotebookError(problems)
    return CheckedNotebook(
        source=source,
        routes=tuple(routes.values()),
        setup_cells=tuple(setup),
        kernel_name=kernel_name,
        language=language,
        version=_version(node, kernel_name),
        raw=raw,
    )
