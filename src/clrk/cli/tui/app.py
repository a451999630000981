"""The `clrk dev` TUI (Textual), with k9s' keys: ``:`` jumps to a view (``:agents``,
``:system``, ``:inv``), ``/`` filters the current one, ``?`` helps, ``esc`` goes back,
``q`` quits, ``⏎`` opens the selected agent or component, ``y`` shows an agent's YAML.

The header carries real per-minute rates over a sliding minute. The TUI is a client:
it reads the API server, dev.sock and the OTLP tail (:mod:`clrk.cli.tui.feed`); it runs
in a process of its own, so drawing never competes with the API server's loop.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import (
    ContentSwitcher,
    DataTable,
    Footer,
    Input,
    RichLog,
    Static,
    TabbedContent,
    TabPane,
    Tree,
)

from clrk.cli.dev_components import human_uptime
from clrk.cli.tui.feed import AgentDetail, Feed, Snapshot
from clrk.cli.tui.lines import (
    agent_of,
    call_of,
    is_call_log,
    log_line,
    phase,
    span_details,
    span_label,
)
from clrk.cli.tui.rates import Rates, Window

VIEWS = {"agents": "agents", "agent": "agent", "a": "agents", "system": "system",
         "sys": "system", "inv": "inv", "invocations": "inv", "help": "help"}
KEPT_LINES = 2000
KEPT_SPANS = 2000
TREE_SPANS = 300
HELP = """\
clrk dev: keys
  :agents  :system  :inv   jump to a view (:q quits)
  /        filter the current view (esc clears it)
  enter    open the selected agent (agents view) or component's log (system view)
  y        the open agent's YAML
  esc      back
  ?        this help
  q        quit (stops clrk dev when it started this TUI)

agents view: PHASE is up <uptime> and restarts for a daemon, crashloop, image pull
failed; idle or active and the executions in flight for a TaskAgent. REQ/MIN, TOKENS/MIN
and COST/MIN are rates over the last minute (not running totals); P50 and P95 are the
latencies of the agent's calls in that minute. COST is the running total since the TUI
started, at list prices for the models clrk knows (- for the others)."""


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    md = obj["metadata"]
    return md.get("namespace", ""), str(obj.get("kind", "")), md["name"]


class DevTUI(App[None]):
    TITLE = "clrk dev"
    AUTO_FOCUS = "#agents"
    CSS = """
    #summary { height: 2; padding: 0 1; background: $boost; }
    #command, #filter { display: none; height: 3; }
    #command.open, #filter.open { display: block; }
    #components { height: auto; max-height: 14; }
    #otel-logs { height: 1fr; border-top: solid $primary; }
    #otel-traces { height: 1fr; border-top: solid $primary; }
    #agent-title { height: 1; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"), Binding("ctrl+c", "quit", "quit", show=False),
        Binding("colon", "command", ":view", key_display=":"),
        Binding("slash", "filter", "/filter", key_display="/"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("escape", "pop_view", "back"), Binding("y", "yaml", "yaml"),
    ]

    def __init__(self, data_dir: Path, refresh_seconds: float = 2.0) -> None:
        super().__init__()
        self.feed = Feed(data_dir)
        self.refresh_seconds = refresh_seconds
        self.snapshot = Snapshot()
        self.stack: list[str] = ["agents"]
        self.filters: dict[str, str] = {}
        self.total = Window()
        self.windows: dict[tuple[str, str, str], Window] = collections.defaultdict(Window)
        self.log_lines: collections.deque[str] = collections.deque(maxlen=KEPT_LINES)
        self.spans: collections.deque[dict[str, Any]] = collections.deque(maxlen=KEPT_SPANS)
        self.opened: tuple[str, str, str] | None = None  # (namespace, kind, name)
        self.detail: AgentDetail | None = None
        self.component: str | None = None
        self.records = 0
        self._stop = asyncio.Event()

    # -- layout ---------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="summary")
        yield Input(placeholder="agents | system | inv | help | q", id="command")
        yield Input(placeholder="filter", id="filter")
        with ContentSwitcher(initial="agents", id="views"):
            yield DataTable(id="agents", cursor_type="row", zebra_stripes=True)
            with Vertical(id="agent"):
                yield Static("", id="agent-title")
                with TabbedContent(id="agent-tabs"):
                    with TabPane("logs", id="tab-logs"):
                        yield RichLog(id="agent-logs", max_lines=KEPT_LINES)
                    with TabPane("traces", id="tab-traces"):
                        yield Tree("spans", id="agent-traces")
                    with TabPane("invocations", id="tab-invocations"):
                        yield DataTable(id="agent-invocations", cursor_type="row")
                    with TabPane("status", id="tab-status"):
                        yield Static("", id="agent-status")
            yield RichLog(id="yaml", max_lines=5000)
            with Vertical(id="system"):
                yield DataTable(id="components", cursor_type="row")
                yield RichLog(id="otel-logs", max_lines=KEPT_LINES)
                yield Tree("otel-traces", id="otel-traces")
            yield RichLog(id="component-log", max_lines=KEPT_LINES)
            yield DataTable(id="inv", cursor_type="row", zebra_stripes=True)
            yield Static(HELP, id="help")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#agents", DataTable).add_columns(
            "KIND", "NAMESPACE", "NAME", "PHASE", "REQ/MIN", "P50", "P95", "TOKENS/MIN",
            "COST/MIN", "COST", "POOL")
        self.query_one("#components", DataTable).add_columns(
            "COMPONENT", "STATE", "READY", "PID", "UPTIME", "RESTARTS", "ADDRESS")
        for table in ("#inv", "#agent-invocations"):
            self.query_one(table, DataTable).add_columns(
                "NAMESPACE", "NAME", "AGENT", "PHASE", "TRIGGER", "WORKER", "EXIT", "STARTED")
        self.query_one("#otel-traces", Tree).root.expand()
        self.query_one("#agent-traces", Tree).root.expand()
        self.set_interval(self.refresh_seconds, self.reload)
        self.set_interval(1.0, self.draw_summary)
        self.reload()
        self.follow()

    # -- data -----------------------------------------------------------------------
    @work(exclusive=True, group="snapshot")
    async def reload(self) -> None:
        self.snapshot = await asyncio.to_thread(self.feed.snapshot)
        self.draw_tables()
        if self.current == "agent" and self.opened is not None:
            await self.load_agent()
        if self.current == "component-log":
            self.draw_component_log()

    @work(group="tail")
    async def follow(self) -> None:
        await self.feed.follow(lambda: self.snapshot.receiver(), self.on_record, self._stop)

    def on_record(self, record: dict[str, Any]) -> None:
        self.records += 1
        who = agent_of(record)
        call = call_of(record)
        if call is not None:
            self.total.add(call)
            if who is not None:
                self.windows[who].add(call)
        if is_call_log(record):
            line = log_line(record)
            self.log_lines.append(line)
            if self._matches("system", line):
                self.query_one("#otel-logs", RichLog).write(Text(line))
        if record.get("signal") == "span":
            self.spans.append(record)
            self._add_span(self.query_one("#otel-traces", Tree), record)
            if who is not None and self.opened is not None \
                    and (who[0], who[1], who[2]) == self.opened:
                self._add_span(self.query_one("#agent-traces", Tree), record)

    def _add_span(self, tree: Tree[dict[str, Any]], record: dict[str, Any]) -> None:
        node = tree.root.add(Text(span_label(record)), data=record)
        for detail in span_details(record):
            node.add_leaf(Text(detail))
        while len(tree.root.children) > TREE_SPANS:
            tree.root.children[0].remove()

    async def load_agent(self) -> None:
        if self.opened is None:
            return
        ns, kind, name = self.opened
        try:
            self.detail = await asyncio.to_thread(self.feed.agent, kind, ns, name)
        except Exception as err:  # shown, never a crash of the TUI
            self.query_one("#agent-title", Static).update(f"{kind} {ns}/{name}: {err}")
            return
        self.draw_agent()

    # -- drawing --------------------------------------------------------------------
    def rates(self, key: tuple[str, str, str] | None = None) -> Rates:
        window = self.total if key is None else self.windows[key]
        return window.rates(time.time())

    def draw_summary(self) -> None:
        snap = self.snapshot
        workers = [c for c in snap.components
                   if c.name.startswith("worker-") and "/" not in c.name]
        r = self.rates()
        text = (f"agents {len(snap.agents)}  pools {len(snap.pools)}  workers ready "
                f"{sum(c.ready for c in workers)}/{len(workers)}  "
                f"requests/min {r.requests:.0f}  tokens/min in {r.tokens_in:.0f} "
                f"out {r.tokens_out:.0f}  cost/min {_money(r.cost)}")
        problems = "  ".join(snap.problems)
        view = self.current + (f"  /{self.filters[self.current]}"
                               if self.filters.get(self.current) else "")
        self.query_one("#summary", Static).update(Text(
            f"{text}\n[{view}] " + (problems or "? help  : views  / filter  q quit")))

    def _matches(self, view: str, *cells: object) -> bool:
        needle = self.filters.get(view, "").lower()
        return not needle or any(needle in str(c).lower() for c in cells)

    @staticmethod
    def _refill(table: DataTable[Any], rows: list[tuple[str, list[str]]]) -> None:
        row = table.cursor_row
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        if rows:
            table.move_cursor(row=min(row, len(rows) - 1))

    def agent_rows(self) -> list[tuple[str, list[str]]]:
        in_flight = collections.Counter(
            (i["metadata"]["namespace"], i["spec"].get("agentKind"), i["spec"].get("agentName"))
            for i in self.snapshot.invocations
            if (i.get("status") or {}).get("phase") in ("Dispatched", "Running"))
        rows = []
        for obj in self.snapshot.agents:
            key = _key(obj)
            r = self.rates(key)
            cells = [key[1], key[0], key[2], phase(obj, in_flight[key]), f"{r.requests:.0f}",
                     _ms(r.p50_ms), _ms(r.p95_ms),
                     f"{r.tokens_in:.0f}/{r.tokens_out:.0f}", _money(r.cost),
                     _money(self.windows[key].total_cost),
                     str(obj["spec"].get("workerPoolRef", ""))]
            if self._matches("agents", *cells):
                rows.append(("/".join(key), cells))
        return rows

    def invocation_rows(self, agent: tuple[str, str, str] | None = None
                        ) -> list[tuple[str, list[str]]]:
        rows = []
        for inv in reversed(self.snapshot.invocations):  # newest first
            md, spec, st = inv["metadata"], inv["spec"], inv.get("status") or {}
            if agent is not None and (md["namespace"], spec.get("agentKind"),
                                      spec.get("agentName")) != agent:
                continue
            cells = [md["namespace"], md["name"], spec.get("agentName", ""),
                     st.get("phase", ""), spec.get("trigger", ""), st.get("worker") or "",
                     "" if st.get("exitCode") is None else str(st["exitCode"]),
                     st.get("startTime") or ""]
            if agent is not None or self._matches("inv", *cells):
                rows.append((f"{md['namespace']}/{md['name']}", cells))
        return rows

    def component_rows(self) -> list[tuple[str, list[str]]]:
        rows = []
        for c in self.snapshot.components:
            cells = [c.name, c.state, "yes" if c.ready else "no", str(c.pid or "-"),
                     human_uptime(c.uptime_seconds), str(c.restarts), c.address or "-"]
            if self._matches("system", *cells):
                rows.append((c.name, cells))
        return rows

    def draw_tables(self) -> None:
        self._refill(self.query_one("#agents", DataTable), self.agent_rows())
        self._refill(self.query_one("#components", DataTable), self.component_rows())
        self._refill(self.query_one("#inv", DataTable), self.invocation_rows())
        if self.opened is not None:
            self._refill(self.query_one("#agent-invocations", DataTable),
                         self.invocation_rows(self.opened))
        self.draw_summary()

    def draw_agent(self) -> None:
        if self.detail is None or self.opened is None:
            return
        ns, kind, name = self.opened
        obj = self.detail.obj
        r = self.rates(self.opened)
        self.query_one("#agent-title", Static).update(
            f"{kind} {ns}/{name}  {phase(obj)}  requests/min {r.requests:.0f}  "
            f"p50 {_ms(r.p50_ms)}  p95 {_ms(r.p95_ms)}  (y: YAML, esc: back)")
        logs = self.query_one("#agent-logs", RichLog)
        logs.clear()
        for line in self.detail.logs:
            logs.write(Text(line))
        status = ["conditions:"]
        for c in (obj.get("status") or {}).get("conditions") or []:
            status.append(f"  {c.get('type')}={c.get('status')} {c.get('reason') or ''}: "
                          f"{c.get('message') or ''}")
        status.append("events:")
        for e in self.detail.events[-30:]:
            status.append(f"  {e.get('lastTimestamp') or e.get('eventTime') or ''} "
                          f"{e.get('type')} {e.get('reason')}: {e.get('message')}")
        self.query_one("#agent-status", Static).update(Text("\n".join(status)))
        self._refill(self.query_one("#agent-invocations", DataTable),
                     self.invocation_rows(self.opened))

    def draw_component_log(self, lines: int = 500) -> None:
        part = next((c for c in self.snapshot.components if c.name == self.component), None)
        view = self.query_one("#component-log", RichLog)
        view.clear()
        if part is None or not part.log:
            view.write(f"{self.component}: no log")
            return
        try:
            with open(part.log, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 256 * 1024))
                tail = f.read().decode("utf-8", "replace").splitlines()[-lines:]
        except OSError as err:
            view.write(f"{part.log}: {err.strerror}")
            return
        for line in tail:
            if self._matches("component-log", line):
                view.write(Text(line))

    def redraw_otel_logs(self) -> None:
        pane = self.query_one("#otel-logs", RichLog)
        pane.clear()
        for line in self.log_lines:
            if self._matches("system", line):
                pane.write(Text(line))

    # -- navigation -----------------------------------------------------------------
    @property
    def current(self) -> str:
        return self.stack[-1]

    def show(self, view: str, push: bool = True) -> None:
        if push and self.current != view:
            self.stack.append(view)
        self.query_one("#views", ContentSwitcher).current = view
        self.draw_summary()

    def focus_view(self) -> None:
        """Keys go to the current view's table (or to the app), never to a closed box."""
        focus = {"agents": "#agents", "system": "#components", "inv": "#inv",
                 "agent": "#agent-invocations"}.get(self.current)
        self.set_focus(self.query_one(focus) if focus else None)

    def action_command(self) -> None:
        box = self.query_one("#command", Input)
        box.add_class("open")
        box.value = ""
        box.focus()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("open")
        box.value = self.filters.get(self.current, "")
        box.focus()

    def action_help(self) -> None:
        self.show("help")

    def action_pop_view(self) -> None:
        for box in self.query(Input):
            if box.has_class("open"):
                box.remove_class("open")
                self.focus_view()
                return
        if self.filters.pop(self.current, None):
            self.apply_filter()
            return
        if len(self.stack) > 1:
            self.stack.pop()
            if self.current != "agent":
                self.opened = None
            self.show(self.current, push=False)
            self.focus_view()

    async def action_yaml(self) -> None:
        if self.current != "agent" or self.detail is None:
            return
        view = self.query_one("#yaml", RichLog)
        view.clear()
        view.write(Text(self.detail.yaml()))
        self.show("yaml")

    @on(Input.Submitted, "#command")
    def command(self, event: Input.Submitted) -> None:
        event.input.remove_class("open")
        word = event.value.strip().lstrip(":").lower()
        if word in ("q", "quit", "q!"):
            self.exit()
            return
        if word in VIEWS and VIEWS[word] != "agent":
            self.show(VIEWS[word])
        else:
            self.notify(f"no view {word!r}: agents, system, inv, help", severity="warning")
        self.focus_view()

    @on(Input.Submitted, "#filter")
    def filter(self, event: Input.Submitted) -> None:
        event.input.remove_class("open")
        self.filters[self.current] = event.value.strip()
        self.apply_filter()
        self.focus_view()

    def apply_filter(self) -> None:
        self.draw_tables()
        self.redraw_otel_logs()
        if self.current == "component-log":
            self.draw_component_log()

    @on(DataTable.RowSelected, "#agents")
    async def open_agent(self, event: DataTable.RowSelected) -> None:
        ns, kind, name = str(event.row_key.value).split("/", 2)
        await self.open(ns, kind, name)

    async def open(self, namespace: str, kind: str, name: str) -> None:
        """The agent's view: logs, traces, invocations, conditions and events."""
        self.opened = (namespace, kind, name)
        self.detail = None
        tree = self.query_one("#agent-traces", Tree)
        tree.clear()
        for record in self.spans:
            who = agent_of(record)
            if who is not None and who == self.opened:
                self._add_span(tree, record)
        self.show("agent")
        await self.load_agent()

    @on(DataTable.RowSelected, "#components")
    def open_component(self, event: DataTable.RowSelected) -> None:
        self.component = str(event.row_key.value)
        self.draw_component_log()
        self.show("component-log")

    async def on_unmount(self) -> None:
        self._stop.set()

