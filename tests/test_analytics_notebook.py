"""The notebook check: routes parsed as kernel gateway parses them, each refusal its own message."""

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from hub_ext.cli import main as cli_main
from hub_ext.services.analytics.notebook import NotebookError, check_notebook

NOTEBOOKS = Path(__file__).parent / "notebooks"


def nb_bytes(*sources: str, kernel: str | None = "python3") -> bytes:
    meta = {"language_info": {"name": "python"}}
    if kernel:
        meta["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    return nbformat.writes(
        new_notebook(cells=[new_code_cell(s) for s in sources], metadata=meta)
    ).encode()


def refusal(data, source=None):
    with pytest.raises(NotebookError) as info:
        check_notebook(data, source)
    return info.value.problems


def test_routes_parsed_like_kernel_gateway():
    nb = check_notebook(NOTEBOOKS / "trivial.ipynb")
    assert [(r.verb, r.path, r.cell) for r in nb.routes] == [
        ("GET", "/hello", 3),
        ("GET", "/learners/:id", 4),
        ("POST", "/echo", 6),
        ("GET", "/pid", 7),
    ]
    learners = nb.routes[1]
    assert learners.response_cell == 5
    assert learners.params == ("id",)
    assert nb.setup_cells == (2,)
    assert nb.kernel_name == "python3"
    assert nb.route_for("GET", "/learners/alice") == (learners, {"id": "alice"})
    assert nb.route_for("GET", "/learners") is None
    assert nb.route_for("DELETE", "/hello") is None

    # the same cells through kernel gateway's own parser: the same routes
    from kernel_gateway.notebook_http.cell.parser import APICellParser

    node = nbformat.read(NOTEBOOKS / "trivial.ipynb", 4)
    parser = APICellParser(comment_prefix="#")
    sources = [c.source for c in node.cells if c.cell_type == "code"]
    kg = {(verb, path) for path, verbs in parser.endpoints(sources) for verb in verbs}
    assert kg == {(r.verb, r.path) for r in nb.routes}


def test_version_changes_with_content():
    a = check_notebook(nb_bytes('# GET /a\nprint("1")'))
    b = check_notebook(nb_bytes('# GET /a\nprint("2")'))
    assert a.version != b.version
    assert a.version == check_notebook(nb_bytes('# GET /a\nprint("1")')).version


def test_magics_compile():
    nb = check_notebook(nb_bytes("%matplotlib inline\n!echo hi", '# GET /a\nprint("{}")'))
    assert nb.setup_cells == (1,)


@pytest.mark.parametrize(
    "name, code, cell, words",
    [
        ("bad_no_routes", "no-routes", None, "no routes"),
        (
            "bad_duplicate_route",
            "duplicate-route",
            3,
            "duplicate route GET /learners/:learner (cell 2",
        ),
        ("bad_unsupported_verb", "unsupported-verb", 2, "unsupported verb 'PATCH'"),
        ("bad_malformed_path", "malformed-path", 2, "malformed path '/learners/:id/activity log'"),
        ("bad_syntax", "does-not-compile", 2, "does not compile: line 2"),
    ],
)
def test_each_refusal_has_its_own_message(name, code, cell, words):
    problems = refusal(NOTEBOOKS / f"{name}.ipynb")
    assert [p.code for p in problems] == [code]
    (problem,) = problems
    assert problem.cell == cell
    text = str(problem)
    assert text.startswith(str(NOTEBOOKS / f"{name}.ipynb"))
    assert words in text
    if cell is not None:
        first_line = (
            nbformat.read(NOTEBOOKS / f"{name}.ipynb", 4).cells[cell - 1].source.splitlines()[0]
        )
        assert f"cell {cell} ({first_line!r})" in text


@pytest.mark.parametrize(
    "annotation, code, words",
    [
        ("# get /a", "unsupported-verb", "write 'GET'"),
        ("# HEAD /a", "unsupported-verb", "unsupported verb 'HEAD'"),
        ("# ResponseInfo PATCH /a", "unsupported-verb", "unsupported verb 'PATCH'"),
        ("#GET /a", "malformed-annotation", "space after '#'"),
        ("# GET /a/", "malformed-path", "trailing '/'"),
        ("# GET /a//b", "malformed-path", "empty segment"),
        ("# GET /a?x=1", "malformed-path", "query string"),
        ("# GET /a/:1x", "malformed-path", "parameter ':1x'"),
        ("# GET /a/:", "malformed-path", "parameter ':'"),
        ("# GET /a/:id/:id", "malformed-path", "appears twice"),
        ("# GET /a/(.*)", "malformed-path", "segment '(.*)'"),
        ("# ResponseInfo GET /nowhere", "orphan-response", "which no cell serves"),
    ],
)
def test_annotation_refusals(annotation, code, words):
    problems = refusal(nb_bytes('# GET /ok\nprint("{}")', f'{annotation}\nprint("{{}}")'))
    assert [p.code for p in problems] == [code]
    assert problems[0].cell == 2
    assert words in str(problems[0])


def test_several_problems_reported_at_once():
    problems = refusal(
        nb_bytes("x = (", '# GET /a\nprint("{}")', '# GET /a\nprint("[]")', "# PATCH /b\n")
    )
    assert [(p.cell, p.code) for p in problems] == [
        (1, "does-not-compile"),
        (3, "duplicate-route"),
        (4, "unsupported-verb"),
    ]


def test_not_a_notebook_and_no_kernel():
    assert refusal(b"{not json", "x.ipynb")[0].code == "not-a-notebook"
    assert refusal(json.dumps({"metadata": {}}), "x.ipynb")[0].code == "not-a-notebook"
    problems = refusal(nb_bytes('# GET /a\nprint("{}")', kernel=None))
    assert [p.code for p in problems] == ["no-kernelspec"]


def test_cli_check_notebook(capsys):
    assert cli_main(["check-notebook", str(NOTEBOOKS / "trivial.ipynb")]) == 0
    out = capsys.readouterr().out
    assert "4 route(s)" in out and "/learners/:id" in out and "ResponseInfo in cell 5" in out

    assert cli_main(["check-notebook", str(NOTEBOOKS / "bad_unsupported_verb.ipynb")]) == 1
    err = capsys.readouterr().err
    assert "cell 2 ('# PATCH /learners/:id'): unsupported verb 'PATCH'" in err
    assert "would be refused" in err

    assert cli_main(["check-notebook", str(NOTEBOOKS / "missing.ipynb")]) == 1
    assert "cannot read" in capsys.readouterr().err


SHIPPED = sorted((Path(__file__).parent.parent / "kernelgateway_notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", [*SHIPPED, NOTEBOOKS / "trivial.ipynb"], ids=lambda p: p.name)
def test_routes_are_what_the_gateway_itself_serves(path):
    """The check's routes are exactly the endpoints kernel gateway's own parser finds."""
    from kernel_gateway.notebook_http.cell.parser import APICellParser

    checked = check_notebook(path)
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    endpoints = APICellParser(comment_prefix="#").endpoints(cells)
    served = {(verb, endpoint) for endpoint, verbs in endpoints for verb in verbs}
    assert served and {(r.verb, r.path) for r in checked.routes} == served
