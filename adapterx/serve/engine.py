"""`Engine`: one frozen encoder serving many adapters, with no HTTP in it.

The backbone is loaded once. Adapters are read from artifacts directories or adapter directories
(adapterx.serve.discover) and each is loaded as `adapterx evaluate` loads it (adapterx.serve.adapters). A request
row names an adapter, a stack of LoRA adapters ("intermediate+target", bottom first) or nothing (the bare
encoder); `prepare` turns rows into tokenised work, `run` answers a batch of work -- rows of every LoRA adapter,
stack and the bare encoder in ONE forward (adapterx.serve.bank), each other adapter's rows in one sub-batch --
and `release` ends the rows' claim on their adapters. `infer` does all three for a list of rows.

Adapters can be added and removed while the engine serves: `add` loads (from under `adapter_root` only, when
`hot`), `remove` stops new rows for the adapter, waits until its prepared rows are released, then drops it; the
bank changes between two forwards. All methods are thread-safe; forwards run one at a time. A front end (the
HTTP app in adapterx.serve.http, a Ray Serve deployment) owns batching and wraps one engine; the engine has no
global state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from adapterx.core.backbone import Backbone, load_backbone, usable_positions
from adapterx.core.errors import AdapterxError, did_you_mean
from adapterx.serve.adapters import SERVING_FORMS, ServedAdapter, load_served
from adapterx.serve.bank import GatheredEncoder, build_bank
from adapterx.serve.discover import BASE, STACK, check_name, discover, discover_all, inside_root
from adapterx.serve.errors import Conflict, NotFound, RequestError, Unavailable
from adapterx.serve.forward import BatchResult, run_batch
from adapterx.serve.rows import ROW_KINDS, Limits, Program, Row, Work, encode_row
from adapterx.store import read_metadata

log = logging.getLogger(__name__)


class Engine:
    """See the module docstring. `form`: how LoRA adapters are served ("gathered", the default; "unmerged",
    "merged", "fused": one sub-batch per adapter, for comparison); other kinds are served unmerged."""

    def __init__(
        self,
        backbone: Backbone,
        *,
        form: str = "gathered",
        auto_truncate: bool = False,
        adapter_root: str | Path | None = None,
    ):
        if backbone.claimed:
            raise AdapterxError(f"backbone {backbone.name!r} already carries adapters; serve an untouched one")
        self.backbone = backbone
        self.form = SERVING_FORMS.get(form).name
        self.adapter_root = Path(adapter_root).resolve() if adapter_root is not None else None
        config, tokenizer = backbone.model.config, backbone.tokenizer
        self.tokenizer = tokenizer
        self.limits = Limits(min(tokenizer.model_max_length, usable_positions(config)), auto_truncate)
        self.num_layers = config.num_hidden_layers
        self._entries: dict[str, ServedAdapter] = {}  # replaced whole on a change: readers take it as it is
        self._gathered = GatheredEncoder(backbone.model)
        self._forward = threading.Lock()  # one forward at a time; the bank changes between forwards
        self._admin = threading.Lock()  # one add or remove at a time
        self._claims = threading.Condition()  # guards ServedAdapter.inflight / draining
        self._tokenizing = threading.Lock()  # a fast tokenizer must not be called from two threads at once

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def from_sources(cls, sources: Sequence[str | Path], backbone: str | Backbone | None = None, **options) -> "Engine":
        """An engine over the adapters `sources` name (see adapterx.serve.discover), on `backbone` (a name, a
        loaded Backbone, or None: the one the adapters were trained on)."""
        found = discover_all(list(sources))
        if not isinstance(backbone, Backbone):
            backbone = load_backbone(backbone or _trained_on(found))
        engine = cls(backbone, **options)
        for name, directory in found:
            engine.add(directory, name=name, hot=False)
        return engine

    @property
    def device(self):
        return next(self.backbone.model.parameters()).device

    # ------------------------------------------------------------------------------------------ the registry
    def adapters(self) -> list[dict]:
        return [e.info() for e in self._entries.values()]

    def get(self, name: str) -> ServedAdapter:
        entries = self._entries
        if name not in entries:
            raise NotFound(f"unknown adapter {name!r}{did_you_mean(name, entries)}", param="name")
        return entries[name]

    def add(self, path: str | Path, name: str | None = None, *, hot: bool = True) -> dict:
        """Load the adapter saved in `path` as `name` (default: its directory's name) and serve it. `hot`: a
        request's path, which must lie under `adapter_root` (as must everything the adapter rests on)."""
        directory = inside_root(str(path), self.adapter_root) if hot else Path(path)
        name = check_name(name, "name") if name else discover(directory)[0][0]
        with self._admin:
            if name in self._entries:
                raise Conflict(f"name: an adapter named {name!r} is already served; remove it first", param="name")
            entry = load_served(name, directory, self.backbone, self.form, self.adapter_root if hot else None)
            self._install({**self._entries, name: entry})
        log.info("serving %s (%s) from %s", name, entry.form, directory)
        return entry.info()

    def remove(self, name: str, timeout: float | None = None) -> dict:
        """Stop new rows for `name`, wait (up to `timeout` seconds) until its prepared rows are released, drop it."""
        with self._claims:
            entry = self.get(name)
            if entry.draining:
                raise NotFound(f"adapter {name!r} is already being removed", param="name")
            entry.draining = True
            if not self._claims.wait_for(lambda: entry.inflight == 0, timeout):
                entry.draining = False
                raise Unavailable(f"adapter {name!r} still has {entry.inflight} rows in flight; try again")
        with self._admin:
            self._install({n: e for n, e in self._entries.items() if n != name})
        log.info("removed %s", name)
        return entry.info()

    def _install(self, entries: dict[str, ServedAdapter]) -> None:
        """Make `entries` the served set: a new bank over their gathered factors, swapped in between forwards."""
        slots: dict[str, dict] = {}
        for entry in entries.values():
            for key in entry.slots:
                slots.setdefault(key, entry.factors[key])
        bank = build_bank(slots, self._gathered.model)
        with self._forward:
            self._gathered.set_bank(bank)
            self._entries = entries

    # ------------------------------------------------------------------------------------------ rows
    def resolve(self, adapter: str | Sequence[str] | None, where: str = "adapter") -> Program:
        """The program a row's adapter field names (see the module docstring)."""
        entries = self._entries
        if adapter is None or adapter == "" or adapter == BASE:
            return Program("")
        names = list(adapter) if not isinstance(adapter, str) else _split(adapter, entries, where)
        chosen = []
        for n in names:
            if n not in entries or entries[n].draining:
                hint = did_you_mean(n, [k for k, e in entries.items() if not e.draining])
                raise NotFound(f"{where}: unknown adapter {n!r}{hint} (GET /adapters lists them)", param=where)
            chosen.append(entries[n])
        program = Program(STACK.join(names), tuple(chosen))
        if len(chosen) > 1 and not program.shared:
            alone = next(e for e in chosen if not e.shared)
            raise RequestError(
                f"{where}: only LoRA adapters served gathered can be stacked in a request; {alone.name!r} is "
                f"served {alone.form} ({alone.metadata.get('kind')}): serve the trained stack under its own name",
                param=where,
            )
        if len(set(program.slots)) != len(program.slots):
            raise RequestError(f"{where}: the stack {program.name!r} holds one adapter twice", param=where)
        return program

    def prepare(self, rows: Sequence[Row]) -> list[Work]:
        """Tokenised work for `rows`, each claiming its adapters until `release`; any bad row fails them all."""
        works = []
        for row in rows:
            if row.kind not in ROW_KINDS:
                raise RequestError(f"{row.where}: unknown row kind {row.kind!r}", param=row.where)
            if not -self.num_layers - 1 <= row.layer <= self.num_layers:
                raise RequestError(
                    f"{row.where}.layer: {row.layer} does not exist; hidden states are 0..{self.num_layers} "
                    f"(-1: the last)",
                    param=f"{row.where}.layer",
                )
            program = self.resolve(row.adapter, f"{row.where}.adapter")
            with self._tokenizing:
                works.append(encode_row(row, program, self.tokenizer, self.limits))
        with self._claims:
            for work in works:
                for entry in work.program.entries:
                    if entry.draining:
                        raise NotFound(f"{work.row.where}.adapter: adapter {entry.name!r} is being removed")
            for work in works:
                for entry in work.program.entries:
                    entry.inflight += 1
        return works

    def release(self, works: Sequence[Work]) -> None:
        """End the claim of `works` on their adapters (once per work; more calls do nothing)."""
        with self._claims:
            for work in works:
                if not work.released:
                    work.released = True
                    for entry in work.program.entries:
                        entry.inflight -= 1
            self._claims.notify_all()

    def run(self, works: Sequence[Work]) -> BatchResult:
        """Answer one batch of prepared work (rows may come from many requests)."""
        with self._forward:
            return run_batch(works, self._gathered, self.tokenizer.pad_token_id, self.device)

    def infer(self, rows: Sequence[Row]) -> list[dict]:
        """prepare + run + release: the answers to `rows` as one batch."""
        works = self.prepare(rows)
        try:
            return self.run(works).answers
        finally:
            self.release(works)


def _split(text: str, entries: dict, where: str) -> list[str]:
    """The adapter names a "a+b" field stacks: itself if it is a name, else the one way of cutting it at '+'
    into served names (names may hold '+' themselves)."""
    if text in entries:
        return [text]
    tokens = text.split(STACK)
    ways: list[list[str]] = []

    def cut(start: int, taken: list[str]) -> None:
        if start == len(tokens):
            ways.append(taken)
            return
        for end in range(start + 1, len(tokens) + 1):
            name = STACK.join(tokens[start:end])
            if name in entries:
                cut(end, [*taken, name])

    cut(0, [])
    if len(ways) > 1:
        shown = " or ".join(" + ".join(map(repr, w)) for w in ways)
        raise RequestError(f"{where}: {text!r} can be read as {shown}; give the stack as a list", param=where)
    if not ways:
        unknown = next((t for t in tokens if t not in entries), text) if len(tokens) > 1 else text
        raise NotFound(f"{where}: unknown adapter {unknown!r}{did_you_mean(text, entries)}", param=where)
    return ways[0]


def _trained_on(found: list[tuple[str, Path]]) -> str:
    """The backbone the adapters were trained on (the original one, for a target trained on a merged base)."""
    names = set()
    for _, directory in found:
        metadata = read_metadata(directory)
        merged = any(p.get("role") == "merged_into_base" for p in metadata.get("requires", []))
        if not merged:
            names.add(metadata["base_model"]["name"])
    if len(names) != 1:
        what = ", ".join(sorted(names)) or "none without a merged base"
        raise AdapterxError(f"the adapters were trained on {what}; choose the backbone with --backbone")
    return names.pop()
