"""Time to first chart drawn in headless Chromium: the shipped heat-map over the OULAD course.

    .venv/bin/python tests/benchmarks/bench_views.py [--route /charts/heatmap] [--runs 10]

A real JupyterHub and proxy on loopback with the events, analytics and course-page services
on the repository's catalog (``hub_config/courses.yaml``), its event store the OULAD import
(small tables and the 13,905-row head of the click table); tina, the course's teacher, in
Debian's Chromium through Playwright (``tests/browser.py``'s setup). For each run, on a
fresh page of the course's analytics (``/services/analytics/aaa-2013j/``):

- ``chart``: from the click on the route's *Show* to the figure drawn (the page's script
  marks ``figure.chart[data-drawn]`` once vega-embed has drawn the SVG): the request, the
  notebook's answer, Vega-Lite's compile and Vega's render;
- baseline ``json``: the same route's answer fetched by a script on the same page (the same
  URL, cookie and XSRF token) and parsed: what drawing adds is the ratio.

The analytics answer cache is warm after the first run (both measures read the same cached
answer); the first run is reported apart. OULAD: Kuzilek, Hlosta, Zdrahal (2017),
Scientific Data 4:170171, CC BY 4.0.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hub_ext.services.events.importers import import_oulad  # noqa: E402
from hub_ext.services.events.store import EventStore  # noqa: E402
from tests.browser import chromium_path  # noqa: E402
from tests.events_fixtures import OULAD  # noqa: E402
from tests.hubtest import HubProcess  # noqa: E402

COURSE = "aaa-2013j"


async def running(hub: HubProcess, token: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=60) as c:
        while time.monotonic() < deadline:
            r = await c.get(
                f"{hub.url}/services/analytics/{COURSE}/",
                headers={"Authorization": f"token {token}", "Accept": "application/json"},
            )
            apis = r.json().get("apis", []) if r.status_code == 200 else []
            if apis and all(a["state"] == "running" for a in apis):
                return
            await asyncio.sleep(1)
    raise SystemExit(f"{COURSE}'s APIs did not start in {timeout:.0f} s: see {hub.log_path}")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", default="/charts/heatmap", help="the chart route's path")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if chromium_path() is None:
        raise SystemExit("no chromium on this machine (apt-get install chromium)")
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="bench-views-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        store = EventStore(f"sqlite:///{work / 'events.sqlite'}")
        import_oulad(store, OULAD)
        store.dispose()
        print(f"OULAD imported in {time.perf_counter() - t0:.0f} s")
        hub = HubProcess(
            work, REPO / "hub_config" / "courses.yaml", services=("events", "analytics", "courses")
        )
        await hub.start()
        try:
            token = await hub.user_token("tina")
            await running(hub, token)
            async with async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
                )
                context = await browser.new_context(viewport={"width": 1280, "height": 900})
                page = await context.new_page()
                await page.goto(f"{hub.url}/hub/login")
                await page.fill("input[name=username]", "tina")
                await page.fill("input[name=password]", hub.password)
                async with page.expect_navigation():
                    await page.click("input[type=submit], button[type=submit]")
                chart, raw = [], []
                for _ in range(args.runs):
                    await page.goto(f"{hub.url}/services/analytics/{COURSE}/")
                    await page.wait_for_selector("html[data-ready=true]")
                    form = page.locator(f'form.route-form[data-path="{args.route}"]').first
                    answer = page.locator("#" + await form.get_attribute("data-answer"))
                    clicked = await page.evaluate("() => performance.now()")
                    await form.locator("button[type=submit]").click()
                    figure = answer.locator("figure.chart[data-drawn]")
                    await figure.wait_for(timeout=120_000)
                    chart.append(float(await figure.get_attribute("data-drawn")) - clicked)
                    # the URL the chart was drawn from: the answer's own "Open as JSON" link
                    api = await answer.locator("a", has_text="Open as JSON").get_attribute("href")
                    raw.append(
                        await page.evaluate(
                            """async (url) => {
                              const token = document.querySelector('meta[name="hub-xsrf-token"]').content;
                              const t = performance.now();
                              const r = await fetch(url, {headers: {Accept: "application/json", "X-XSRFToken": token}});
                              JSON.parse(await r.text());
                              return performance.now() - t;
                            }""",
                            api,
                        )
                    )
                marks = await figure.locator("svg .role-mark > path").count()
                await browser.close()
        finally:
            await hub.shutdown()
    first, warm = chart[0], chart[1:] or chart
    print(f"route {args.route} of {COURSE}: {marks} marks drawn; {args.runs} runs")
    print(f"  first chart (cold answer cache): {first:.0f} ms")
    print(
        f"  chart, warm   p50 {statistics.median(warm):7.1f} ms  p95 {pct(warm, 95):7.1f} ms\n"
        f"  json,  warm   p50 {statistics.median(raw[1:] or raw):7.1f} ms  "
        f"p95 {pct(raw[1:] or raw, 95):7.1f} ms\n"
        f"  ratio chart/json p50 {statistics.median(warm) / statistics.median(raw[1:] or raw):.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
