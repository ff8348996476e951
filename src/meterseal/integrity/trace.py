"""Behaviour traces T_i per software function, and the detection function f_d (sans-IO).

Definition 2 of the paper records, per function, the sequence of the program's behaviours in
a trusted run. The model keeps, per function, the (action, object) pairs seen and every window
of `window` consecutive ones (a sliding window over the sequence, padded at the start), so
f_d checks both what a function may do and in which order (Definition 3: f_d(A_i) is true iff
A_i belongs to T). Several trusted runs merge into one model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.integrity.behaviour import START, Action, Behaviour, windows
from meterseal.integrity.errors import TraceFormatError

TRACE_FORMAT = 1
_ACTIONS = frozenset(a.value for a in Action)
DEFAULT_WINDOW = 3
MAX_WINDOW = 16

Key = tuple[str, str]
Window = tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class FunctionTrace:
    """T_i of one function: what it may do and in which order."""

    allowed: frozenset[Key]
    windows: frozenset[Window]


@dataclass(frozen=True, slots=True)
class TraceModel:
    """The behaviour traces of a program: one `FunctionTrace` per function, one window size."""

    program: str
    window: int
    functions: Mapping[str, FunctionTrace]
    runs: int = 1

    def to_cbor(self) -> bytes:
        """Canonical CBOR (sorted), so the same traces always sign the same bytes."""
        functions = {
            name: {
                "allowed": sorted([list(k) for k in t.allowed]),
                "windows": sorted([[list(k) for k in w] for w in t.windows]),
            }
            for name, t in self.functions.items()
        }
        return cose.dumps(
            {
                "format": TRACE_FORMAT,
                "program": self.program,
                "window": self.window,
                "runs": self.runs,
                "functions": functions,
            }
        )

    @classmethod
    def from_cbor(cls, data: bytes) -> TraceModel:
        """Decode a trace model strictly; TraceFormatError on anything else."""
        try:
            item = cose.loads_strict(data)
        except CoseFormatError as exc:
            raise TraceFormatError(f"not a trace model: {exc}") from None
        body = _exact(item, {"format", "program", "window", "runs", "functions"}, "trace model")
        if body["format"] != TRACE_FORMAT:
            raise TraceFormatError(f"trace model format {body['format']!r} is not {TRACE_FORMAT}")
        window, runs = body["window"], body["runs"]
        if type(window) is not int or not 1 <= window <= MAX_WINDOW:
            raise TraceFormatError(f"window must be an integer in 1..{MAX_WINDOW}")
        if type(runs) is not int or runs < 1:
            raise TraceFormatError("runs must be a positive integer")
        if not isinstance(body["program"], str) or not isinstance(body["functions"], dict):
            raise TraceFormatError("program is text and functions a map")
        functions = {
            _text(name): _function(value, window) for name, value in body["functions"].items()
        }
        return cls(body["program"], window, functions, runs)

    def detect(self, behaviour: Behaviour, before: Iterable[Key]) -> bool:
        """f_d: whether `behaviour`, after `before` (its function's last window-1), is in T."""
        trace = self.functions.get(behaviour.function)
        if trace is None or behaviour.key not in trace.allowed:
            return False
        history = [START] * (self.window - 1) + list(before)
        window = (*history[len(history) - (self.window - 1) :], behaviour.key)
        return window in trace.windows

    @property
    def behaviour_count(self) -> int:
        """How many distinct (function, action, object) behaviours the model allows."""
        return sum(len(t.allowed) for t in self.functions.values())


def _exact(item: Any, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(item, cose.MAP_TYPES) or set(item) != keys:
        raise TraceFormatError(f"a {what} is a map with exactly {sorted(keys)}")
    return dict(item)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TraceFormatError("names and objects are text")
    return value


def _key(value: Any) -> Key:
    if not isinstance(value, cose.ARRAY_TYPES) or len(value) != 2:
        raise TraceFormatError("a behaviour is [action, object]")
    action, obj = _text(value[0]), _text(value[1])
    if (action, obj) != START and action not in _ACTIONS:
        raise TraceFormatError(f"unknown action {action!r}")
    return (action, obj)


def _function(value: Any, window: int) -> FunctionTrace:
    body = _exact(value, {"allowed", "windows"}, "function trace")
    allowed = frozenset(_key(k) for k in body["allowed"])
    found: set[Window] = set()
    for w in body["windows"]:
        if not isinstance(w, cose.ARRAY_TYPES) or len(w) != window:
            raise TraceFormatError(f"every window has {window} behaviours")
        found.add(tuple(_key(k) for k in w))
    if any(k != START and k not in allowed for w in found for k in w):
        raise TraceFormatError("a window holds a behaviour its function does not allow")
    return FunctionTrace(allowed, frozenset(found))


@dataclass
class TraceRecorder:
    """Collects the behaviours of trusted runs, per process and function, into a model."""

    program: str
    window: int = DEFAULT_WINDOW
    runs: int = 0
    _sequences: dict[str, list[list[Key]]] = field(default_factory=lambda: defaultdict(list))
    _open: dict[tuple[int, str], list[Key]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.window <= MAX_WINDOW:
            raise ValueError(f"window must be in 1..{MAX_WINDOW}")

    def record(self, process: int, behaviour: Behaviour) -> None:
        """Add one behaviour of process `process` (a pid, or any id unique within the run)."""
        slot = (process, behaviour.function)
        if slot not in self._open:
            self._open[slot] = []
            self._sequences[behaviour.function].append(self._open[slot])
        self._open[slot].append(behaviour.key)

    def end_run(self) -> None:
        """Close the current run (the next one starts every function's sequence afresh)."""
        self._open.clear()
        self.runs += 1

    def model(self, merge_into: TraceModel | None = None) -> TraceModel:
        """The model of the recorded runs, merged with an earlier model if given."""
        allowed: dict[str, set[Key]] = defaultdict(set)
        found: dict[str, set[Window]] = defaultdict(set)
        runs = self.runs
        if merge_into is not None:
            if merge_into.window != self.window:
                raise TraceFormatError("cannot merge traces with different window sizes")
            runs += merge_into.runs
            for name, t in merge_into.functions.items():
                allowed[name] |= t.allowed
                found[name] |= t.windows
        for name, sequences in self._sequences.items():
            for sequence in sequences:
                allowed[name].update(sequence)
                found[name].update(windows(sequence, self.window))
        functions = {
            name: FunctionTrace(frozenset(allowed[name]), frozenset(found[name]))
            for name in sorted(allowed)
        }
        return TraceModel(self.program, self.window, functions, max(runs, 1))
