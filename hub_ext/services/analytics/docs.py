"""What an API's notebook says about itself, for the pages that show it to a person.

A published notebook documents itself in markdown (``kernelgateway_notebooks/build_notebooks.py``
writes the shipped ones this way, and a teacher's notebook may do the same):

- the first markdown cell's heading is the API's title, its first paragraph the intro;
- the markdown cells right before a route's cell document that route: a heading, text, and
  a table of its parameters::

      | parameter | type | meaning |
      |---|---|---|
      | `learner` | path | the learner id |
      | `gap` | integer minutes 1-1440, default 55 | the gap that ends a session |

:func:`api_docs` reads that into :class:`ApiDoc` / :class:`RouteDoc` / :class:`Param`. It never
refuses a notebook: what it cannot read is left out (a route's path parameters are always
there, documented or not), so a page shows every route with a form for its parameters.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from .notebook import CheckedNotebook, Route, load_notebook

__all__ = ["ApiDoc", "Param", "RouteDoc", "api_docs", "markdown_html", "parse_param"]

_RANGE = re.compile(r"(-?\d+)\s*-\s*(-?\d+)")
_DEFAULT = re.compile(r"\bdefault\s+([^\s,;]+)", re.IGNORECASE)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_NAME = re.compile(r"^`?([A-Za-z_][A-Za-z0-9_]*)`?$")
_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*([^*]+)\*\*")
_CELL = re.compile(r"(?<!\\)\|")  # a cell border: a | not escaped as \|


@dataclass(frozen=True)
class Param:
    """One parameter of a route, and the form input that asks for it."""

    name: str
    location: str  # "path" or "query"
    kind: str = ""  # the table's "type" column, as written
    meaning: str = ""
    required: bool = False
    input_type: str = "text"  # text, number, date or select
    choices: tuple[str, ...] = ()
    default: str | None = None
    minimum: int | None = None
    maximum: int | None = None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "in": self.location,
            "type": self.kind,
            "meaning": self.meaning,
            "required": self.required,
            "input": self.input_type,
            "choices": list(self.choices),
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
        }


@dataclass(frozen=True)
class RouteDoc:
    """A route with what its markdown says: ``title`` and ``text`` (markdown), parameters."""

    verb: str
    path: str
    title: str = ""
    text: str = ""
    params: tuple[Param, ...] = ()

    def as_dict(self) -> dict:
        return {
            "verb": self.verb,
            "path": self.path,
            "title": self.title,
            "text": self.text,
            "params": [p.as_dict() for p in self.params],
        }


@dataclass(frozen=True)
class ApiDoc:
    title: str = ""
    intro: str = ""
    routes: tuple[RouteDoc, ...] = field(default_factory=tuple)


def parse_param(name: str, kind: str, meaning: str, location: str) -> Param:
    """A parameter from its table row: the type column decides the input.

    ``path`` -> required text; ``date ...`` -> a date; ``integer ... 1-1440`` -> a number
    with that range; ``a | b | c`` -> a choice; ``default X`` -> X is the default;
    a query parameter is required only if its type says ``required``.
    """
    text = kind.lower()
    first = kind.split(",", 1)[0]
    choices: tuple[str, ...] = ()
    minimum = maximum = None
    if location == "path":
        input_type = "text"
    elif "|" in first:
        input_type = "select"
        choices = tuple(c.strip().strip("`") for c in first.split("|") if c.strip())
    elif "date" in text:
        input_type = "date"
    elif "integer" in text or "number" in text:
        input_type = "number"
        if m := _RANGE.search(kind):
            minimum, maximum = int(m[1]), int(m[2])
    else:
        input_type = "text"
    default = m[1].strip("`") if (m := _DEFAULT.search(kind)) else None
    required = location == "path" or ("required" in text and "optional" not in text)
    return Param(
        name=name,
        location=location,
        kind=kind,
        meaning=meaning,
        required=required,
        input_type=input_type,
        choices=choices,
        default=default,
        minimum=minimum,
        maximum=maximum,
    )


def _table_rows(markdown: str) -> list[tuple[str, str, str]]:
    """(name, type, meaning) of each row of the markdown's parameter table (the one whose
    header says parameter). A ``|`` in the type column (``learners | events``), escaped
    or not, stays in the type: the name is the first cell, the meaning the last."""
    rows, in_table = [], False
    for line in markdown.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip().replace("\\|", "|") for c in _CELL.split(line.strip().strip("|"))]
        if not in_table:
            in_table = bool(cells) and cells[0].lower().strip("`") in ("parameter", "name")
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue  # the |---|---| line
        if len(cells) >= 3:
            rows.append((cells[0], " | ".join(cells[1:-1]), cells[-1]))
        else:
            rows.append((cells[0], cells[1] if len(cells) > 1 else "", ""))
    return rows


def _split(markdown: str) -> tuple[str, str]:
    """(the first heading, the text up to the first table, code block or example)."""
    title, lines = "", []
    for line in markdown.splitlines():
        if not title and not lines and (m := _HEADING.match(line)):
            title = m[1].strip()
            continue
        stripped = line.strip()
        if stripped.startswith(("|", "```")) or stripped.lower().startswith("example response"):
            break
        lines.append(line)
    return title, "\n".join(lines).strip()


def _route_doc(route: Route, markdown: str) -> RouteDoc:
    title, text = _split(markdown)
    if title.strip("`").strip() in (f"{route.verb} {route.path}", route.path):
        title = ""  # the heading only repeats the route
    params: dict[str, Param] = {}
    for first, kind, meaning in _table_rows(markdown):
        m = _NAME.match(first)
        if not m or m[1] in params:
            continue
        name = m[1]
        location = "path" if name in route.params else "query"
        params[name] = parse_param(name, kind, meaning, location)
    ordered = [params.pop(n, None) or parse_param(n, "path", "", "path") for n in route.params]
    return RouteDoc(route.verb, route.path, title, text, (*ordered, *params.values()))


def api_docs(nb: CheckedNotebook) -> ApiDoc:
    """Every route of ``nb`` (in the notebook's order) with what its markdown says."""
    node, _, _ = load_notebook(nb.raw, nb.source)
    by_cell = {r.cell: r for r in nb.routes}
    title = intro = ""
    before: list[str] = []  # markdown since the last code cell
    docs = []
    for index, cell in enumerate(node.cells, start=1):
        source = cell.get("source", "")
        if cell.get("cell_type") == "markdown":
            if not title and not docs and not intro:
                title, intro = _split(source)
                intro = intro.split("\n\n", 1)[0]
            before.append(source)
            continue
        if cell.get("cell_type") != "code":
            continue
        if index in by_cell:
            docs.append(_route_doc(by_cell[index], "\n\n".join(before)))
        before = []
    return ApiDoc(title, intro, tuple(docs))


def markdown_html(text: str) -> str:
    """The little markdown route docs use, as safe HTML: paragraphs, `code`, **strong**.

    Everything is escaped first; only those three are made into markup, so a notebook's
    text cannot put anything else on a page.
    """
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()):
        if not block.strip():
            continue
        escaped = html.escape(" ".join(block.split()), quote=True)
        escaped = _CODE.sub(r"<code>\1</code>", escaped)
        escaped = _STRONG.sub(r"<strong>\1</strong>", escaped)
        paragraphs.append(f"<p>{escaped}</p>")
    return "\n".join(paragraphs)
