// The analytics pages: each route's form calls the route (the same JSON URL a program
// calls) and the answer is drawn by its shape:
//   a Vega-Lite (or Vega) specification -> a chart, through vega-embed, SVG renderer;
//   a list of records                   -> a table, sorted by a click on a column;
//   an object                           -> a definition list (nested values drawn the same);
// with the raw JSON one click away. Everything a notebook answers is put on the page as
// text (textContent), never as markup; the page's policy allows no inline code and no eval
// (charts use Vega's expression interpreter), and charts load no data from URLs.
"use strict";

(() => {
  const MAX_ROWS = 500; // rows drawn per table; sorting orders them all

  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    node.append(...children);
    return node;
  };

  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const schemaOf = (v) => (isObject(v) && typeof v.$schema === "string" ? v.$schema : "");
  const isVegaLite = (v) => /vega-lite/i.test(schemaOf(v));
  const isVega = (v) => /\/schema\/vega\/v\d/i.test(schemaOf(v));
  const isRecords = (v) => Array.isArray(v) && v.length > 0 && v.every(isObject);
  const plural = (n, word) => `${n.toLocaleString("en")} ${word}${n === 1 ? "" : "s"}`;

  function scalarText(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(+v.toFixed(4));
    if (typeof v === "object") {
      const text = JSON.stringify(v);
      return text.length > 200 ? text.slice(0, 199) + "…" : text;
    }
    return String(v);
  }

  // ------------------------------------------------------------------ the request

  function routeUrl(form) {
    const base = form.dataset.api.replace(/\/$/, "");
    const path = form.dataset.path
      .split("/")
      .map((seg) =>
        seg.startsWith(":") ? encodeURIComponent(form.elements[seg.slice(1)].value.trim()) : seg,
      )
      .join("/");
    const query = new URLSearchParams();
    for (const input of form.querySelectorAll("[data-in=query]")) {
      const value = input.value.trim();
      if (value) query.append(input.name, value);
    }
    const q = query.toString();
    return base + (path === "/" ? "/" : path) + (q ? `?${q}` : "");
  }

  function xsrfToken() {
    const meta = document.querySelector('meta[name="hub-xsrf-token"]');
    return meta ? meta.content : "";
  }

  async function call(form) {
    const target = document.getElementById(form.dataset.answer);
    const url = routeUrl(form);
    const started = performance.now();
    target.setAttribute("aria-busy", "true");
    target.replaceChildren(el("p", { class: "status", text: "Asking the notebook…" }));
    let response;
    let text;
    try {
      response = await fetch(url, {
        // the hub's OAuth cookie counts for a script's request with the page's XSRF token
        // (JupyterHub's _xsrf_utils: a cookie without it is ignored, and the answer is 401)
        headers: { Accept: "application/json", "X-XSRFToken": xsrfToken() },
        credentials: "same-origin",
      });
      text = await response.text();
    } catch (e) {
      target.removeAttribute("aria-busy");
      showError(target, url, 0, { message: `the request failed (${e.message})` });
      return;
    }
    target.removeAttribute("aria-busy");
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (!response.ok) {
      showError(target, url, response.status, isObject(body) ? body : { message: text.slice(0, 500) });
      return;
    }
    await show(target, url, body === undefined ? text : body, text, performance.now() - started);
  }

  const HEADLINES = {
    0: "No answer.",
    400: "Check the parameters.",
    401: "Your session has ended: reload the page to log in again.",
    403: "Not allowed.",
    404: "Not found.",
    503: "Not ready yet: try again in a moment.",
    504: "The analysis took too long.",
  };

  function showError(target, url, status, body) {
    const box = el("div", { class: "error", role: "alert" });
    const headline = HEADLINES[status] || (status >= 500 ? "The analytics could not answer." : "Refused.");
    box.append(el("p", {}, el("strong", { text: headline }), " ", body.message || ""));
    const details = [];
    if (body.parameter) details.push(`parameter ${body.parameter}`);
    if (status) details.push(`HTTP ${status}${body.error ? ` (${body.error})` : ""}`);
    if (body.request_id) details.push(`request ${body.request_id}`);
    if (details.length) box.append(el("p", { class: "meta", text: details.join(" · ") }));
    box.append(el("p", { class: "meta" }, el("a", { href: url, text: "The answer as JSON" })));
    target.replaceChildren(box);
  }

  // ------------------------------------------------------------------ the answer

  function describe(value) {
    if (isVegaLite(value) || isVega(value)) {
      const values = value.data && value.data.values;
      return Array.isArray(values) ? `A chart of ${plural(values.length, "data point")}` : "A chart";
    }
    if (isRecords(value)) return plural(value.length, "record");
    if (Array.isArray(value)) return plural(value.length, "value");
    if (isObject(value)) return plural(Object.keys(value).length, "field");
    return "A value";
  }

  async function show(target, url, value, text, elapsed) {
    const view = el("div", { class: "view" });
    const jsonId = `${target.id}-json`;
    const pre = el("pre", { class: "json", id: jsonId, hidden: true, tabindex: "0" });
    const toggle = el("button", {
      type: "button",
      class: "json-toggle",
      "aria-expanded": "false",
      "aria-controls": jsonId,
      text: "Show the JSON",
    });
    toggle.addEventListener("click", () => {
      const open = pre.hidden;
      if (open && !pre.textContent) {
        pre.textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
      }
      pre.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
      toggle.textContent = open ? "Hide the JSON" : "Show the JSON";
    });
    const toolbar = el(
      "div",
      { class: "toolbar" },
      el("p", { class: "status", text: `${describe(value)} · ${Math.round(elapsed)} ms` }),
      toggle,
      el("a", { href: url, class: "raw", text: "Open as JSON" }),
    );
    target.replaceChildren(toolbar, view, pre);
    await draw(view, value, 0);
  }

  async function draw(container, value, depth) {
    if (isVegaLite(value) || isVega(value)) return chart(container, value);
    if (isRecords(value)) return table(container, value);
    if (isObject(value)) return fields(container, value, depth);
    if (Array.isArray(value)) {
      container.append(
        el("p", { text: value.length ? value.map(scalarText).join(", ") : "(none)" }),
      );
      return undefined;
    }
    container.append(el(depth ? "span" : "p", { text: scalarText(value) }));
    return undefined;
  }

  // a chart: vega-embed, SVG, no data from URLs, no eval
  const refuseUrls = () => {
    if (typeof vega === "undefined") return undefined;
    const loader = vega.loader();
    loader.sanitize = async (uri) => {
      throw new Error(`charts here draw inline data only (data.values), not ${uri}`);
    };
    return loader;
  };

  async function chart(container, spec) {
    const label = (typeof spec.description === "string" && spec.description) ||
      (typeof spec.title === "string" && spec.title) ||
      (isObject(spec.title) && typeof spec.title.text === "string" && spec.title.text) ||
      "A chart";
    const box = el("figure", { class: "chart", "aria-label": label });
    container.append(box);
    const values = spec.data && spec.data.values;
    if (typeof vegaEmbed !== "function") {
      box.append(el("figcaption", {
        class: "note",
        text: "The chart libraries are not installed on this hub: the chart's data follows.",
      }));
      if (isRecords(values)) table(container, values);
      return;
    }
    const canvas = el("div", { class: "chart-canvas" });
    box.append(canvas);
    try {
      const result = await vegaEmbed(canvas, spec, {
        renderer: "svg",
        actions: false,
        defaultStyle: false,
        ast: true, // Vega's interpreter instead of generated code: no 'unsafe-eval'
        loader: refuseUrls(),
        tooltip: { disableDefaultStyle: true },
      });
      const svg = canvas.querySelector("svg");
      if (svg) {
        svg.setAttribute("role", "img");
        svg.setAttribute("aria-label", label);
      }
      box.append(downloads(result.view, label));
      box.dataset.drawn = String(Math.round(performance.now()));
      box.dispatchEvent(new CustomEvent("chart-drawn", { bubbles: true }));
    } catch (e) {
      box.replaceChildren(
        el("p", { class: "error", role: "alert", text: `The chart could not be drawn: ${e.message}` }),
      );
      if (isRecords(values)) table(container, values);
    }
  }

  function downloads(view, label) {
    const name = label.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "").toLowerCase() || "chart";
    const bar = el("figcaption", { class: "downloads" });
    for (const type of ["svg", "png"]) {
      const button = el("button", { type: "button", text: `Download ${type.toUpperCase()}` });
      button.addEventListener("click", async () => {
        const a = el("a", { href: await view.toImageURL(type, type === "png" ? 2 : 1), download: `${name}.${type}` });
        document.body.append(a);
        a.click();
        a.remove();
      });
      bar.append(button);
    }
    return bar;
  }

  // a table of records, sorted by a click on a column's header
  function compare(key, direction) {
    return (a, b) => {
      const x = a[key];
      const y = b[key];
      const xMissing = x === null || x === undefined;
      const yMissing = y === null || y === undefined;
      if (xMissing || yMissing) return xMissing === yMissing ? 0 : xMissing ? 1 : -1; // last
      if (typeof x === "number" && typeof y === "number") return direction * (x - y);
      return direction * scalarText(x).localeCompare(scalarText(y), "en", { numeric: true });
    };
  }

  function table(container, records) {
    const columns = [...new Set(records.flatMap((r) => Object.keys(r)))];
    let order = records.slice();
    let sortedBy = null;
    let direction = 1;
    const shown = Math.min(records.length, MAX_ROWS);
    const caption = el("caption", {
      text:
        `${plural(records.length, "row")}` +
        (shown < records.length ? `, the first ${shown} shown` : "") +
        ". Choose a column's name to sort by it.",
    });
    const headers = columns.map((c) => {
      const button = el("button", { type: "button", class: "sort", text: c });
      const th = el("th", { scope: "col", "aria-sort": "none" }, button);
      button.addEventListener("click", () => {
        direction = sortedBy === c ? -direction : 1;
        sortedBy = c;
        order = records.slice().sort(compare(c, direction));
        for (const other of headers) other.setAttribute("aria-sort", "none");
        th.setAttribute("aria-sort", direction > 0 ? "ascending" : "descending");
        rows();
      });
      return th;
    });
    const tbody = el("tbody");
    const rows = () =>
      tbody.replaceChildren(
        ...order.slice(0, MAX_ROWS).map((r) =>
          el("tr", {}, ...columns.map((c) => el("td", { class: typeof r[c] === "number" ? "num" : null, text: scalarText(r[c]) }))),
        ),
      );
    rows();
    const wrap = el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption.textContent });
    wrap.append(el("table", { class: "records" }, caption, el("thead", {}, el("tr", {}, ...headers)), tbody));
    container.append(wrap);
  }

  // an object: its fields, each value drawn by its own shape
  async function fields(container, object, depth) {
    const entries = Object.entries(object);
    if (!entries.length) {
      container.append(el("p", { text: "(no fields)" }));
      return;
    }
    const list = el("dl", { class: "fields" });
    container.append(list);
    for (const [key, value] of entries) {
      const dd = el("dd");
      list.append(el("dt", { text: key }), dd);
      if (value !== null && typeof value === "object") await draw(dd, value, depth + 1);
      else dd.textContent = scalarText(value);
    }
  }

  for (const form of document.querySelectorAll("form.route-form")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      call(form);
    });
  }
  document.documentElement.dataset.ready = "true";
})();
