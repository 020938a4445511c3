"""A kernel gateway personality: notebook-http with guards, so a gateway cannot hang.

Run a gateway with it::

    jupyter-kernelgateway --KernelGatewayApp.api=hub_ext.services.analytics.personality \\
        --KernelGatewayApp.seed_uri=notebook.ipynb --KernelGatewayApp.port_retries=0 \\
        --AnalyticsPersonality.execution_timeout=30

(:mod:`hub_ext.services.analytics.launch` builds that command.) Routes are read from the
notebook exactly as ``kernel_gateway.notebook_http`` reads them; what differs is how a
request is run. Stock notebook-http, measured with jupyter-kernel-gateway 3.0.1:

- waits for a free kernel in an unbounded queue, with no timeout -> here a queue
  timeout answers ``503 queue_timeout``, and a client that hangs up leaves the queue;
- lets a cell run forever -> here an execution timeout answers ``504
  execution_timeout`` and interrupts the kernel (restarting it if the interrupt does not
  bring it back within ``interrupt_grace``);
- sends cells but never reads their shell replies, and stalls for good after ~14,600
  requests on one kernel -> here every reply is read, and a kernel is recycled (a fresh
  one is started and seeded *before* the old one stops) after
  ``max_requests_per_kernel`` requests;
- keeps pointing at a dead kernel -> here a dead kernel is replaced and its setup cells
  re-run;
- keeps listening, hung, when a setup cell raises -> here the process exits at once
  (status 3) after printing one ``HUB_EXT_SETUP_ERROR {json}`` line naming the cell;
- answers a raising cell with ``500 text/plain`` -> here every error is JSON
  ``{"error", "message", "request_id"}``, the traceback goes to the log only;
- parses a body only for exactly ``application/json`` -> here any ``application/json;
  charset=...`` (or ``+json``) body is parsed, and invalid JSON is a 400.

``GET /_hub_ext/health`` runs code on a kernel (or, when every kernel is busy, checks
that none is past its deadline): the watchdog in the analytics service restarts a gateway
whose checks fail. The gateway token is accepted only in the ``Authorization`` header,
and neither it nor cookies reach the notebook's ``REQUEST``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import tornado.web
from jupyter_client.session import Session
from jupyter_server.utils import url_path_join
from kernel_gateway.notebook_http import NotebookHTTPPersonality
from kernel_gateway.notebook_http.request_utils import (
    format_request,
    headers_to_dict,
    parameterize_path,
    parse_args,
)
from traitlets import Float, Integer, default
from traitlets.config import LoggingConfigurable

from ..base import JSONErrorsMixin

__all__ = ["AnalyticsPersonality", "create_personality", "SETUP_ERROR_EXIT", "SETUP_ERROR_MARK"]

#: exit status of a gateway whose setup cell raised
SETUP_ERROR_EXIT = 3
#: prefix of the one stderr line that describes the setup error (JSON follows)
SETUP_ERROR_MARK = "HUB_EXT_SETUP_ERROR "
HEALTH_PATH = "/_hub_ext/health"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class QueueTimeout(Exception):
    """No kernel became free in time."""


class ExecutionTimeout(Exception):
    """A cell ran past its deadline."""


class KernelDied(Exception):
    """The kernel process went away while running a cell."""


@dataclass
class ExecutionResult:
    stream: list[str] = field(default_factory=list)
    result: dict | None = None
    error: dict | None = None  # {ename, evalue, traceback}

    @property
    def output(self) -> str:
        """The answer's body, as notebook-http makes it (stdout, else the result bundle)."""
        if self.stream:
            return "".join(self.stream)
        if self.result:
            return json.dumps(self.result)
        return ""


class SetupError(Exception):
    """A setup cell raised: the kernel cannot serve."""

    def __init__(self, cell: int, first_line: str, error: dict):
        self.cell, self.first_line, self.error = cell, first_line, error
        super().__init__(
            f"setup cell {cell} ({first_line!r}) raised {error.get('ename')}: {error.get('evalue')}"
        )

    def as_dict(self) -> dict:
        return {
            "cell": self.cell,
            "first_line": self.first_line,
            "error": f"{self.error.get('ename')}: {self.error.get('evalue')}",
            "message": str(self),
        }


@dataclass(eq=False)
class _Slot:
    """One kernel of the pool and the client that talks to it."""

    kernel_id: str
    client: Any
    requests: int = 0
    busy_since: float | None = None
    deadline: float | None = None
    recycling: bool = False
    successor: _Slot | None = None  # a fresh kernel that takes this one's place at release


class GuardedKernelPool(LoggingConfigurable):
    """A fixed number of seeded kernels, lent to one request at a time, first come first served."""

    def __init__(self, personality: AnalyticsPersonality, **kwargs):
        super().__init__(parent=personality, log=personality.log, **kwargs)
        self.personality = personality
        self.slots: list[_Slot] = []
        self._free: deque[_Slot] = deque()
        self._waiters: deque[asyncio.Future] = deque()
        self.ready = asyncio.Event()
        self.stats = {"requests": 0, "restarts": 0, "recycled": 0, "interrupts": 0, "timeouts": 0}

    @property
    def km(self):
        return self.personality.parent.kernel_manager

    # ---------------------------------------------------------------- kernels

    async def start(self, count: int) -> None:
        slots = await asyncio.gather(*(self._new_slot() for _ in range(count)))
        for slot in slots:
            self.slots.append(slot)
            self.release(slot)
        self.ready.set()

    async def _new_slot(self) -> _Slot:
        """Start a kernel, connect a client that reads every reply, run the setup cells."""
        kernel_id = await self.km.start_kernel(kernel_name=self.km.seed_kernelspec)
        kernel = self.km.get_kernel(kernel_id)
        # this pool replaces dead kernels itself (re-running the setup cells); the
        # restarter would restart them behind its back, unseeded
        kernel.stop_restarter()
        client = kernel.client()
        client.session = Session(config=kernel.session.config, key=kernel.session.key)
        client.start_channels()
        slot = _Slot(kernel_id, client)
        try:
            await client.wait_for_ready(timeout=self.personality.setup_timeout)
            for index, code, first_line in self.personality.setup_cells:
                try:
                    result = await self.execute(slot, code, self.personality.setup_timeout)
                except ExecutionTimeout:
                    result = ExecutionResult(
                        error={
                            "ename": "TimeoutError",
                            "evalue": f"ran longer than {self.personality.setup_timeout:g}s",
                        }
                    )
                if result.error:
                    raise SetupError(index, first_line, result.error)
        except BaseException:
            await self._discard(slot)
            raise
        self.log.info(
            "Kernel %s ready (%d setup cells run)", kernel_id, len(self.personality.setup_cells)
        )
        return slot

    async def _discard(self, slot: _Slot) -> None:
        try:
            slot.client.stop_channels()
        except Exception:
            pass
        try:
            await asyncio.wait_for(self.km.shutdown_kernel(slot.kernel_id, now=True), 10)
        except Exception as e:
            self.log.warning("Kernel %s: shutdown failed: %s", slot.kernel_id, e)

    async def is_alive(self, slot: _Slot) -> bool:
        try:
            return await self.km.get_kernel(slot.kernel_id).is_alive()
        except KeyError:
            return False

    async def replace(self, slot: _Slot, reason: str) -> _Slot | None:
        """A fresh seeded kernel in ``slot``'s place (started before the old one stops)."""
        self.log.warning("Kernel %s: replacing it (%s)", slot.kernel_id, reason)
        self.stats["restarts"] += 1
        try:
            new, slot.successor = slot.successor, None
            if new is None:
                new = await self._new_slot()
        except Exception as e:
            self.log.error("Kernel %s: could not start a replacement: %s", slot.kernel_id, e)
            new = None
        await self._discard(slot)
        self.slots = [new if s is slot else s for s in self.slots if s is not slot or new]
        return new

    async def shutdown(self) -> None:
        for fut in self._waiters:
            fut.cancel()
        await asyncio.gather(*(self._discard(s) for s in self.slots), return_exceptions=True)
        self.slots = []

    # ---------------------------------------------------------------- lending

    async def acquire(self, timeout: float) -> _Slot:
        """The next free kernel, first come first served; QueueTimeout after ``timeout`` s."""
        if self._free and not self._waiters:
            slot = self._free.popleft()
        else:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                slot = await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise QueueTimeout() from None
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self.release(fut.result())  # handed over just as the client left
                raise
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)
        return slot

    def release(self, slot: _Slot | None) -> None:
        if slot is None:
            return
        if slot.successor is not None:  # recycled: the fresh kernel serves from now on
            new, slot.successor = slot.successor, None
            self.slots = [new if s is slot else s for s in self.slots]
            asyncio.ensure_future(self._discard(slot))
            self.log.info("Kernel %s recycled after %d requests", slot.kernel_id, slot.requests)
            slot = new
        slot.busy_since = slot.deadline = None
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(slot)
                return
        self._free.append(slot)

    async def recycle(self, slot: _Slot) -> None:
        """Start a fresh kernel while ``slot`` keeps serving; swap them at its next release."""
        slot.recycling = True
        self.release(slot)
        try:
            new = await self._new_slot()
        except Exception as e:
            self.log.error("Kernel %s: could not start its successor: %s", slot.kernel_id, e)
            slot.recycling, slot.requests = False, 0
            return
        self.stats["recycled"] += 1
        if slot in self._free:
            self._free.remove(slot)
            slot.successor = new
            self.release(slot)
        elif slot in self.slots:
            slot.successor = new
        else:  # replaced meanwhile (it died): the fresh kernel is not needed
            await self._discard(new)

    @property
    def queued(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    def overdue(self, now: float) -> list[_Slot]:
        """Busy kernels whose guards should long have freed them."""
        slack = self.personality.interrupt_grace + self.personality.setup_timeout + 30
        return [s for s in self.slots if s.deadline is not None and now > s.deadline + slack]

    # ---------------------------------------------------------------- running code

    async def execute(self, slot: _Slot, code: str, timeout: float) -> ExecutionResult:
        """Run ``code``, reading its iopub messages and its shell reply, within ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        client = slot.client
        msg_id = client.execute(code, store_history=False, allow_stdin=False)
        result = ExecutionResult()
        idle = replied = False
        while not idle:
            msg = await self._next(slot, client.get_iopub_msg, deadline)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue  # left over from an interrupted execution
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                idle = True
            elif kind == "execute_result":
                result.result = content["data"]
            elif kind == "stream" and content.get("name", "stdout") == "stdout":
                result.stream.append(content["text"])
            elif kind == "error":
                result.error = content
        while not replied:  # read the shell reply: an unread reply is what stalls stock KG
            msg = await self._next(slot, client.get_shell_msg, deadline)
            replied = msg["parent_header"].get("msg_id") == msg_id
        return result

    async def _next(self, slot: _Slot, get, deadline: float) -> dict:
        """The next message from one channel; check the kernel is alive while waiting."""
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ExecutionTimeout()
            try:
                return await get(timeout=min(remaining, 1.0))
            except Exception as e:  # queue.Empty from jupyter_client
                if type(e).__name__ != "Empty":
                    raise
            if not await self.is_alive(slot):
                raise KernelDied()

    async def recover(self, slot: _Slot, msg_hint: str = "") -> None:
        """Bring a kernel whose cell timed out back: interrupt, else replace; then lend it again."""
        self.stats["interrupts"] += 1
        try:
            await self.km.interrupt_kernel(slot.kernel_id)
            ok = await self._drain(slot, self.personality.interrupt_grace)
        except Exception as e:
            self.log.warning("Kernel %s: interrupt failed: %s", slot.kernel_id, e)
            ok = False
        if ok:
            self.log.info("Kernel %s: interrupted %s", slot.kernel_id, msg_hint)
            self.release(slot)
        else:
            self.release(await self.replace(slot, f"did not stop after an interrupt {msg_hint}"))

    async def _drain(self, slot: _Slot, timeout: float) -> bool:
        """After an interrupt: True once the kernel runs a trivial cell again."""
        try:
            result = await self.execute(slot, "pass", timeout)
        except (ExecutionTimeout, KernelDied):
            return False
        return result.error is None


def _from_supervisor(name: str):
    """A trait default read from the supervisor's traits, the one place the defaults live (the
    service passes its values on the command line: this is for a personality run by hand)."""

    @default(name)
    def _default(self):
        from .supervisor import default_gateway_options

        return default_gateway_options()[name]

    return _default


class AnalyticsPersonality(NotebookHTTPPersonality):
    """notebook-http, guarded: timeouts, kernel recovery, JSON errors, a real health check."""

    execution_timeout = Float(
        None,
        allow_none=True,
        config=True,
        help="""Seconds a request's cells may run before the answer is 504 and the kernel is
        interrupted. Default: from ``c.GatewaySupervisor`` (the service passes it). Example: ``c.AnalyticsPersonality.execution_timeout = 10``
        """,
    )
    queue_timeout = Float(
        None,
        allow_none=True,
        config=True,
        help="""Seconds a request may wait for a free kernel before the answer is 503.
        Default: from ``c.GatewaySupervisor`` (the service passes it). Example: ``c.AnalyticsPersonality.queue_timeout = 5``
        """,
    )
    interrupt_grace = Float(
        None,
        allow_none=True,
        config=True,
        help="""Seconds an interrupted kernel has to become idle before it is replaced by a
        fresh one (setup cells re-run). Default: from ``c.GatewaySupervisor`` (the service passes it).
        Example: ``c.AnalyticsPersonality.interrupt_grace = 2``
        """,
    )
    setup_timeout = Float(
        None,
        allow_none=True,
        config=True,
        help="""Seconds the setup cells together may take on a new kernel. Default: from ``c.GatewaySupervisor`` (the service passes it).
        Example: ``c.AnalyticsPersonality.setup_timeout = 60``
        """,
    )
    max_requests_per_kernel = Integer(
        None,
        allow_none=True,
        config=True,
        help="""Requests one kernel serves before it is recycled (a fresh seeded kernel takes
        its place). Replies are read, so this is a second line of defence against the stall
        stock notebook-http hits near 14,600 requests. 0 means never. Default: from ``c.GatewaySupervisor`` (the service passes it).
        Example: ``c.AnalyticsPersonality.max_requests_per_kernel = 2000``
        """,
    )
    health_timeout = Float(
        None,
        allow_none=True,
        config=True,
        help="""Seconds the health check waits for a kernel and for its code to run.
        Default: from ``c.GatewaySupervisor`` (the service passes it). Example: ``c.AnalyticsPersonality.health_timeout = 2``
        """,
    )

    _default_execution_timeout = _from_supervisor("execution_timeout")
    _default_queue_timeout = _from_supervisor("queue_timeout")
    _default_interrupt_grace = _from_supervisor("interrupt_grace")
    _default_setup_timeout = _from_supervisor("setup_timeout")
    _default_max_requests_per_kernel = _from_supervisor("max_requests_per_kernel")
    _default_health_timeout = _from_supervisor("health_timeout")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kernel_pool = GuardedKernelPool(self)
        self.failed: str | None = None
        cells = self.parent.seed_notebook.cells
        self.setup_cells = [
            (i, c.source, (c.source.strip().splitlines() or [""])[0][:80])
            for i, c in enumerate(cells, start=1)
            if c.cell_type == "code"
            and not self.api_parser.is_api_cell(c.source)
            and not self.api_parser.is_api_response_cell(c.source)
        ]

    def should_seed_cell(self, code):
        # the pool runs the setup cells itself, so it knows which one failed
        return False

    async def init_configurables(self):
        count = self.parent.prespawn_count or 1
        try:
            await self.kernel_pool.start(count)
        except SetupError as e:
            self.log.error("%s\n%s", e, _ANSI.sub("", "\n".join(e.error.get("traceback", []))))
            self._exit(e.as_dict())
        except Exception as e:
            self.log.exception("Could not start the kernel pool")
            self._exit(
                {
                    "cell": None,
                    "first_line": "",
                    "error": repr(e),
                    "message": f"kernels did not start: {e}",
                }
            )
        self.log.info("Kernel pool ready: %d kernel(s)", count)

    def _exit(self, detail: dict) -> None:
        """Fast exit: one machine-readable line, kernels stopped, status 3."""
        sys.stderr.write(SETUP_ERROR_MARK + json.dumps(detail) + "\n")
        sys.stderr.flush()
        try:
            for kid in list(self.parent.kernel_manager.list_kernel_ids()):
                km = self.parent.kernel_manager.get_kernel(kid)
                if km.provisioner and km.provisioner.process:
                    km.provisioner.process.kill()
        finally:
            os._exit(SETUP_ERROR_EXIT)

    def create_request_handlers(self):
        base = self.parent.base_url
        endpoints = self.api_parser.endpoints(self.parent.kernel_manager.seed_source)
        responses = self.api_parser.endpoint_responses(self.parent.kernel_manager.seed_source)
        if not endpoints:
            raise RuntimeError(
                "No endpoints were discovered (check the notebook with hub-ext check-notebook)"
            )
        handlers = [(url_path_join("/", base, HEALTH_PATH), HealthHandler, {"personality": self})]
        for path, verbs in endpoints:
            pattern = url_path_join("/", base, parameterize_path(path))
            self.log.info("Registering resource: %s, methods: (%s)", pattern, list(verbs))
            handlers.append(
                (
                    pattern,
                    GuardedAPIHandler,
                    {
                        "personality": self,
                        "route": path,
                        "sources": dict(verbs),
                        "response_sources": dict(responses.get(path, {})),
                    },
                )
            )
        handlers.append((r".*", NotFoundHandler, {"personality": self}))
        return handlers

    async def shutdown(self):
        await self.kernel_pool.shutdown()


def create_personality(*args, **kwargs):
    return AnalyticsPersonality(*args, **kwargs)


# ------------------------------------------------------------------------ handlers


class _JSONHandler(JSONErrorsMixin, tornado.web.RequestHandler):
    """Token check on the Authorization header; every error as {error, message, request_id}."""

    def initialize(self, personality: AnalyticsPersonality, **kwargs):
        super().initialize()
        self.personality = personality

    @property
    def log(self):
        return self.personality.log

    def prepare(self):
        expected = self.settings.get("kg_auth_token")
        if expected:
            given = self.request.headers.get("Authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() not in ("token", "bearer") or not hmac.compare_digest(
                token.strip().encode(), expected.encode()
            ):
                self.fail(401, "unauthorized", "a valid gateway token is required")

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError):
            message = exc.log_message or self._reason
        else:
            message = "internal error (details in the gateway log)"
        self.fail(status_code, self._reason.lower().replace(" ", "_"), message)

    def log_exception(self, typ, value, tb):
        if not isinstance(value, tornado.web.HTTPError):
            self.log.error("request %s failed", self.request_id, exc_info=(typ, value, tb))


class NotFoundHandler(_JSONHandler):
    def prepare(self):
        super().prepare()
        if not self._finished:
            self.fail(404, "not_found", f"no route {self.request.path}")


def parse_request_body(request) -> tuple[Any, str | None]:
    """The body as notebook-http's REQUEST['body'], or (None, why) for invalid JSON."""
    content_type = request.headers.get("Content-Type", "text/plain")
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    charset = "utf-8"
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    if media == "application/x-www-form-urlencoded" or media.startswith("multipart/form-data"):
        return parse_args(request.body_arguments), None
    try:
        text = request.body.decode(charset) if request.body else ""
    except (LookupError, UnicodeDecodeError) as e:
        return None, f"the body is not {charset}: {e}"
    if media == "application/json" or media.endswith("+json"):
        if not text.strip():
            return None, "empty body with Content-Type application/json"
        try:
            return json.loads(text), None
        except ValueError as e:
            return None, f"invalid JSON body: {e}"
    return text, None


def parse_query(request) -> tuple[dict | None, str | None, str | None]:
    """The query as notebook-http's REQUEST['args'] (without ``token``), or (None, the
    parameter, why) when a value is not UTF-8 (stock notebook-http answers that with 500)."""
    args = {}
    for key, values in request.query_arguments.items():
        if key == "token":
            continue
        try:
            args[key] = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError as e:
            return None, key, f"{key}: the value is not UTF-8 ({e.reason} at byte {e.start})"
    return args, None, None


class GuardedAPIHandler(_JSONHandler):
    """Runs a route's cell for one request, within the queue and execution timeouts."""

    SUPPORTED_METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS")
    _SECRET_HEADERS = {"authorization", "cookie", "x-hub-token"}

    def initialize(self, personality, route, sources, response_sources):
        super().initialize(personality)
        self.route = route
        self.sources = sources
        self.response_sources = response_sources
        self._acquiring: asyncio.Future | None = None

    def on_connection_close(self):
        # a client that gives up leaves the queue (stock notebook-http keeps its place)
        if self._acquiring is not None and not self._acquiring.done():
            self._acquiring.cancel()

    async def _handle(self, **path_kwargs):
        method = self.request.method
        if method not in self.sources:  # answered without waiting for a kernel
            allowed = ", ".join(sorted(self.sources))
            self.set_header("Allow", allowed)
            return self.fail(405, "method_not_allowed", f"{self.route} answers {allowed}")
        body, why = parse_request_body(self.request)
        if why:
            return self.fail(400, "invalid_json", why)
        headers = {
            k: v
            for k, v in headers_to_dict(self.request.headers).items()
            if k.lower() not in self._SECRET_HEADERS
        }
        args, parameter, why = parse_query(self.request)
        if why:
            return self.fail(400, "bad_parameter", why, parameter=parameter)
        request = json.dumps({"body": body, "args": args, "path": path_kwargs, "headers": headers})
        code = (
            format_request(request, self.personality.kernel_language or "")
            + "\n"
            + self.sources[method]
        )

        p = self.personality
        pool = p.kernel_pool
        self._acquiring = asyncio.ensure_future(pool.acquire(p.queue_timeout))
        try:
            slot = await self._acquiring
        except QueueTimeout:
            return self.fail(
                503, "queue_timeout", f"no kernel free within {p.queue_timeout:g}s; try again"
            )
        except asyncio.CancelledError:
            self.log.info("request %s: client left while queued", self.request_id)
            return
        finally:
            self._acquiring = None
        release = True
        try:
            if not await pool.is_alive(slot):
                slot = await pool.replace(slot, "found dead")
                if slot is None:
                    return self.fail(503, "kernel_unavailable", "the kernel could not be restarted")
            slot.busy_since = time.monotonic()
            slot.deadline = slot.busy_since + p.execution_timeout
            pool.stats["requests"] += 1
            slot.requests += 1
            deadline = asyncio.get_running_loop().time() + p.execution_timeout
            result = await pool.execute(slot, code, p.execution_timeout)
            response_info = None
            if result.error is None and method in self.response_sources:
                remaining = max(0.001, deadline - asyncio.get_running_loop().time())
                info = await pool.execute(slot, self.response_sources[method], remaining)
                if info.error:
                    result = info
                else:
                    try:
                        response_info = json.loads(info.output)
                    except ValueError:
                        self.log.warning(
                            "request %s: ResponseInfo cell printed no JSON", self.request_id
                        )
            if result.error is not None:
                err = result.error
                self.log.warning(
                    "request %s: %s %s raised %s: %s\n%s",
                    self.request_id,
                    method,
                    self.request.path,
                    err.get("ename"),
                    err.get("evalue"),
                    _ANSI.sub("", "\n".join(err.get("traceback", []))),
                )
                return self.fail(500, "execution_error", f"{err.get('ename')}: {err.get('evalue')}")
            output = result.output
            ctype = "text/plain; charset=utf-8"
            try:
                json.loads(output)
                ctype = "application/json; charset=utf-8"
            except ValueError:
                pass
            self.set_header("Content-Type", ctype)
            if isinstance(response_info, dict):
                for name, value in (response_info.get("headers") or {}).items():
                    self.set_header(name, value)
                if "status" in response_info:
                    self.set_status(int(response_info["status"]))
            self.finish(output)
        except ExecutionTimeout:
            release = False
            pool.stats["timeouts"] += 1
            asyncio.ensure_future(pool.recover(slot, f"(request {self.request_id})"))
            self.fail(
                504,
                "execution_timeout",
                f"the cell ran longer than {p.execution_timeout:g}s and was stopped",
            )
        except KernelDied:
            release = False
            asyncio.ensure_future(self._replace_and_release(slot, "died during a request"))
            self.fail(502, "kernel_died", "the kernel died while answering; it is being restarted")
        finally:
            if release:
                limit = p.max_requests_per_kernel
                if limit and slot is not None and slot.requests >= limit and not slot.recycling:
                    asyncio.ensure_future(pool.recycle(slot))
                else:
                    pool.release(slot)

    async def _replace_and_release(self, slot, reason):
        pool = self.personality.kernel_pool
        pool.release(await pool.replace(slot, reason))

    get = post = put = delete = _handle

    def options(self, **kwargs):
        self.set_header("Allow", ", ".join(sorted(self.sources)))
        self.set_status(204)
        self.finish()


class HealthHandler(_JSONHandler):
    """200 when a kernel ran code just now (or all are busy but within their deadlines)."""

    async def get(self):
        p = self.personality
        pool = p.kernel_pool
        report = {
            "kernels": len(pool.slots),
            "free": len(pool._free),
            "queued": pool.queued,
            **pool.stats,
        }
        if not pool.ready.is_set():
            return self.fail(503, "starting", "kernels are starting")
        if not pool.slots:
            return self.fail(503, "no_kernels", "no kernel is running")
        try:
            slot = await pool.acquire(p.health_timeout)
        except QueueTimeout:
            overdue = pool.overdue(time.monotonic())
            if overdue:
                return self.fail(503, "stuck", f"{len(overdue)} kernel(s) past their deadline")
            return self.finish({"status": "busy", **report})
        try:
            if not await pool.is_alive(slot):
                slot = await pool.replace(slot, "found dead by the health check")
                if slot is None:
                    return self.fail(503, "no_kernels", "a dead kernel could not be replaced")
            result = await pool.execute(slot, "1 + 1", p.health_timeout)
        except (ExecutionTimeout, KernelDied) as e:
            asyncio.ensure_future(pool.recover(slot, "(health check)"))
            slot = None
            return self.fail(503, "unhealthy", f"the kernel did not run code: {type(e).__name__}")
        finally:
            pool.release(slot)
        if result.error or (result.result or {}).get("text/plain") != "2":
            return self.fail(503, "unhealthy", "the kernel ran code but answered wrongly")
        self.finish({"status": "ok", **report})
