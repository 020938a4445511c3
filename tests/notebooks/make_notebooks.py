"""Write the small annotated notebooks the analytics tests use (run it after editing).

    .venv/bin/python tests/notebooks/make_notebooks.py

Good notebooks read the course's event data through ``HUB_EXT_EVENTS_URL`` (a read-only
SQLAlchemy URL; the tests fill a real store with a few statements).
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = """\
import json, os, time
import sqlalchemy as sa
COURSE = os.environ["COURSE_ID"]
ENGINE = sa.create_engine(os.environ["HUB_EXT_EVENTS_URL"])
"""

#: the views notebook's queries (plain SQL over the course's extract)
VIEWS_SETUP = """\
from hub_ext.services.events import queries as q

def rows(sql, **params):
    with ENGINE.connect() as db:
        return [dict(r._mapping) for r in db.execute(sa.text(sql), params)]

def heatmap(measure):
    count = "COUNT(*)" if measure == "events" else "COUNT(DISTINCT verb)"
    values = rows(
        f"SELECT learner, substr(stored, 1, 10) AS date, {count} AS n FROM statements"
        " GROUP BY learner, date ORDER BY learner, date")
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "description": f"{measure} per learner and day",
        "data": {"values": values},
        "mark": "rect",
        "encoding": {
            "x": {"field": "date", "type": "ordinal", "title": "day"},
            "y": {"field": "learner", "type": "nominal"},
            "color": {"field": "n", "type": "quantitative", "title": measure},
            "tooltip": [{"field": "learner"}, {"field": "date"}, {"field": "n", "title": measure}],
        },
    }

def learners():
    return rows(
        "SELECT learner, COUNT(*) AS events, MIN(stored) AS first, MAX(stored) AS last"
        " FROM statements GROUP BY learner ORDER BY learner")

def profile(r):
    learner = q.param_str(r, "learner", required=True)
    since = q.param_date(r, "since")
    where = "learner = :learner" + (" AND stored >= :since" if since else "")
    days = rows(f"SELECT substr(stored, 1, 10) AS date, COUNT(*) AS events FROM statements"
                f" WHERE {where} GROUP BY date ORDER BY date", learner=learner, since=str(since))
    if not days:
        return None
    verbs = rows(f"SELECT verb, COUNT(*) AS n FROM statements WHERE {where} GROUP BY verb",
                 learner=learner, since=str(since))
    return {"learner": learner, "events": sum(d["events"] for d in days),
            "verbs": {v["verb"]: v["n"] for v in verbs}, "days": days}
"""

#: the attacker's setup: every read and write the first sandbox-less version allowed
ATTACK_SETUP = """\
import glob, json, os, socket, sqlite3
SECRET_NAMES = ("JUPYTERHUB_API_TOKEN", "CONFIGPROXY_AUTH_TOKEN", "JPY_COOKIE_SECRET",
                "JUPYTERHUB_CRYPT_KEY", "JUPYTERHUB_OAUTH_CLIENT_SECRET")

def attempt(fn):
    try:
        return {"got": fn()}
    except Exception as e:
        return {"refused": f"{type(e).__name__}: {e}"}

def environs():
    found, commands, gateway_tokens = {}, [], set()
    for path in glob.glob("/proc/[0-9]*/environ"):
        pid = path.split("/")[2]
        try:
            commands.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode()[:80])
            env = open(path, "rb").read().split(b"\\0")
        except OSError:
            continue
        for item in env:
            name, _, value = item.decode(errors="replace").partition("=")
            if name in SECRET_NAMES:
                found.setdefault(name, []).append(pid)
            if name == "KG_AUTH_TOKEN":
                gateway_tokens.add(hash(value))
    # its own gateway's token is the notebook's own; any other gateway's is not
    return {"secrets": found, "processes": commands, "gateway_tokens": len(gateway_tokens)}

def read(path):
    with open(path, "rb") as f:
        return f.read(64).hex()

def write_store():
    db = sqlite3.connect(os.environ["HUB_EXT_EVENTS_URL"].split("file:", 1)[1].split("?")[0])
    db.execute("CREATE TABLE pwned (x)")
    db.commit()
    return "created a table"

def courses():
    db = sqlite3.connect(os.environ["HUB_EXT_EVENTS_URL"].split("///", 1)[1], uri=True)
    return sorted(r[0] for r in db.execute("SELECT DISTINCT course_id FROM statements"))

def sources():
    db = sqlite3.connect(os.environ["HUB_EXT_EVENTS_URL"].split("///", 1)[1], uri=True)
    return db.execute("SELECT key, secret_hash FROM sources").fetchall()

def connect(port):
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        return f"connected to {port}"

def attack(files, ports):
    return {
        "environ": environs(),
        "env": sorted(k for k in os.environ if k in SECRET_NAMES),
        "uid": os.getuid(),
        "capabilities": [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")],
        "files": {f: attempt(lambda f=f: read(f)) for f in files},
        "write_store": attempt(write_store),
        "courses": attempt(courses),
        "sources": attempt(sources),
        "ports": {str(p): attempt(lambda p=p: connect(p)) for p in ports},
    }
"""

NOTEBOOKS = {
    # a working API: several routes, a path parameter, a body, a ResponseInfo cell
    "trivial": [
        new_markdown_cell("# Know thy student\nA tiny API over the course's events."),
        new_code_cell(SETUP),
        new_code_cell('# GET /hello\nprint(json.dumps({"hello": "world", "course": COURSE}))'),
        new_code_cell(
            "# GET /learners/:id\n"
            'learner = json.loads(REQUEST)["path"]["id"]\n'
            "with ENGINE.connect() as db:\n"
            "    n = db.execute(sa.text('SELECT COUNT(*) FROM statements WHERE learner = :a'),"
            " {'a': learner}).scalar()\n"
            'print(json.dumps({"learner": learner, "events": n}))'
        ),
        new_code_cell(
            "# ResponseInfo GET /learners/:id\n"
            'print(json.dumps({"headers": {"Content-Type": "application/json"}, "status": 200}))'
        ),
        new_code_cell(
            '# POST /echo\nreq = json.loads(REQUEST)\nprint(json.dumps({"body": req["body"], '
            '"args": req["args"], "has_auth": "Authorization" in req["headers"]}))'
        ),
        new_code_cell('# GET /pid\nprint(json.dumps({"pid": os.getpid()}))'),
    ],
    # the pages' test API (tests/test_analytics_views*.py): one answer of each shape the
    # pages draw (a Vega-Lite v5 chart with inline data, records, an object), documented as
    # the shipped notebooks are (a markdown cell with a parameter table before each route)
    "views": [
        new_markdown_cell("# Activity views\nCharts, tables and records of the course's events."),
        new_code_cell(SETUP + VIEWS_SETUP),
        new_markdown_cell(
            "## `GET /heatmap`\n\nEvents per learner and day, as a heat-map.\n\n"
            "| parameter | type | meaning |\n|---|---|---|\n"
            "| `measure` | events | verbs, default events | what the colour counts |\n"
        ),
        new_code_cell(
            "# GET /heatmap\nargs = json.loads(REQUEST)['args']\n"
            "measure = (args.get('measure') or ['events'])[0]\n"
            "print(json.dumps(heatmap(measure)))"
        ),
        new_markdown_cell("## `GET /learners`\n\nEvery learner with events: a list of records."),
        new_code_cell("# GET /learners\nprint(json.dumps(learners()))"),
        new_markdown_cell(
            "## `GET /learners/:learner`\n\nOne learner: an object; 404 for a learner without "
            "events.\n\n| parameter | type | meaning |\n|---|---|---|\n"
            "| `learner` | path | the learner's username |\n"
            "| `since` | date YYYY-MM-DD, optional | first day counted |\n"
        ),
        new_code_cell(
            "# GET /learners/:learner\nSTATUS, BODY = q.respond(REQUEST, profile, "
            "allowed=('since',))\nprint(BODY)"
        ),
        new_code_cell("# ResponseInfo GET /learners/:learner\nprint(q.response_info(STATUS))"),
    ],
    # a route that never finishes, next to one that does
    "sleepy": [
        new_code_cell("import json, os, time"),
        new_code_cell("# GET /sleep\nwhile True:\n    time.sleep(0.1)"),
        new_code_cell('# GET /ok\nprint(json.dumps({"ok": True, "pid": os.getpid()}))'),
    ],
    # a route that raises
    "raising": [
        new_code_cell("import json"),
        new_code_cell('# GET /boom\nraise ValueError("no such learner: secret-detail")'),
        new_code_cell('# GET /ok\nprint(json.dumps({"ok": True}))'),
    ],
    # a setup cell that raises: the gateway must exit at once, naming the cell
    "setup_error": [
        new_code_cell("import json"),
        new_code_cell("DATA = {}\nDATA['x'] = 1 / 0"),
        new_code_cell("# GET /x\nprint(json.dumps(DATA))"),
    ],
    # 100k-row pandas aggregation, for the benchmark
    "pandas_agg": [
        new_code_cell(
            "import json\nimport numpy as np, pandas as pd\n"
            "rng = np.random.default_rng(0)\n"
            "DF = pd.DataFrame({'learner': rng.integers(0, 500, 100_000),"
            " 'clicks': rng.integers(1, 20, 100_000)})"
        ),
        new_code_cell(
            "# GET /summary\nout = DF.groupby('learner')['clicks'].sum().nlargest(5)\n"
            "print(json.dumps({str(k): int(v) for k, v in out.items()}))"
        ),
        new_code_cell('# GET /hello\nprint(json.dumps({"hello": "world"}))'),
    ],
    # the soak's notebook: one route with a ResponseInfo cell (3 cell executions per request
    # in stock notebook-http, as in the measured stall near 14,600 requests)
    "soak": [
        new_code_cell("import json"),
        new_code_cell('# GET /hello\nprint(json.dumps({"hello": "world"}))'),
        new_code_cell(
            "# ResponseInfo GET /hello\n"
            'print(json.dumps({"headers": {"Content-Type": "application/json"}, "status": 200}))'
        ),
    ],
    # a teacher gone bad: each route tries to cross the sandbox and reports what it got
    "attacker": [
        new_code_cell(ATTACK_SETUP),
        new_code_cell(
            "# GET /attack\n"
            "args = json.loads(REQUEST)['args']\n"
            "print(json.dumps(attack(args.get('file', []), [int(p) for p in args.get('port', [])])))"
        ),
        new_code_cell('# GET /html\nprint("<script>alert(document.cookie)</script>")'),
        new_code_cell(
            "# ResponseInfo GET /html\n"
            'print(json.dumps({"headers": {"Content-Type": "text/html"}, "status": 200}))'
        ),
        new_code_cell(
            "# GET /whoami\nreq = json.loads(REQUEST)\n"
            'print(json.dumps({"headers": sorted(req["headers"])}))'
        ),
    ],
    # --- refused notebooks, one per refusal
    "bad_no_routes": [
        new_markdown_cell("# GET /in-markdown\nMarkdown does not count."),
        new_code_cell("x = 1"),
    ],
    "bad_duplicate_route": [
        new_code_cell("import json"),
        new_code_cell('# GET /learners/:id\nprint("{}")'),
        new_code_cell('# GET /learners/:learner\nprint("[]")'),
    ],
    "bad_unsupported_verb": [
        new_code_cell('# GET /ok\nprint("{}")'),
        new_code_cell('# PATCH /learners/:id\nprint("{}")'),
    ],
    "bad_malformed_path": [
        new_code_cell('# GET /ok\nprint("{}")'),
        new_code_cell('# GET /learners/:id/activity log\nprint("{}")'),
    ],
    "bad_syntax": [
        new_code_cell('# GET /ok\nprint("{}")'),
        new_code_cell('# GET /broken\nprint("unclosed"'),
    ],
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(
            cells=cells,
            metadata={
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
            },
        )
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{name.replace('_', '-')}-{i}"  # stable ids: regenerating changes nothing
        nbformat.validate(nb)
        nbformat.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
