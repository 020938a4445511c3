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
