"""Trace models, f_d and placeholders (sans-IO)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.crypto import cose
from meterseal.integrity.behaviour import Action, Behaviour, Placeholders, windows
from meterseal.integrity.errors import TraceFormatError
from meterseal.integrity.trace import TraceModel, TraceRecorder

OPEN = Action.OPEN_WRITE


def _b(function: str, action: Action = OPEN, obj: str = "${arg2}/energy.reg") -> Behaviour:
    return Behaviour("${exe}", function, action, obj)


def _model(*runs: list[Behaviour], window: int = 3) -> TraceModel:
    recorder = TraceRecorder("meter", window=window)
    for run in runs:
        for b in run:
            recorder.record(1, b)
        recorder.end_run()
    return recorder.model()


def test_detect_accepts_what_the_trusted_runs_did_in_that_order() -> None:
    model = _model([_b("main"), _b("main", Action.CONNECT, "inet:${arg3}"), _b("main")])
    assert model.detect(_b("main"), [])
    assert model.detect(_b("main", Action.CONNECT, "inet:${arg3}"), [_b("main").key])
    # Known behaviour, unknown order: the window (start, connect) was never seen.
    assert not model.detect(_b("main", Action.CONNECT, "inet:${arg3}"), [])
    # Unknown object, unknown function, unknown action.
    assert not model.detect(_b("main", obj="${arg2}/firmware.bin"), [])
    assert not model.detect(_b("rollback"), [])
    assert not model.detect(_b("main", Action.EXEC, "/bin/sh"), [])


def test_runs_merge_and_window_one_ignores_order() -> None:
    a, c = _b("f"), _b("f", Action.CONNECT, "inet:x")
    model = _model([a, c], [c], window=1)
    assert model.detect(c, [])
    assert model.detect(a, [c.key])
    merged = _model([a]).functions["f"].windows | _model([a, a]).functions["f"].windows
    recorder = TraceRecorder("meter")
    recorder.record(1, a)
    recorder.end_run()
    again = recorder.model(_model([a, a]))
    assert again.functions["f"].windows == merged
    assert again.runs == 2


def test_windows_pad_the_start() -> None:
    assert windows([("a", "1"), ("b", "2")], 2) == [
        (("^", "^"), ("a", "1")),
        (("a", "1"), ("b", "2")),
    ]


behaviours = st.builds(
    Behaviour,
    st.just("${exe}"),
    st.sampled_from(["main", "_start > main > f", "<libc.so.6>"]),
    st.sampled_from(list(Action)),
    st.text(min_size=1, max_size=20),
)


@given(st.lists(st.lists(behaviours, max_size=8), min_size=1, max_size=3), st.integers(1, 5))
def test_model_round_trips_through_canonical_cbor(runs: list[list[Behaviour]], window: int) -> None:
    model = _model(*runs, window=window)
    data = model.to_cbor()
    again = TraceModel.from_cbor(data)
    assert again == model
    assert again.to_cbor() == data
    for run in runs:  # every recorded behaviour is in T after its own function's history
        for i, b in enumerate(run):
            before = [x.key for x in run[:i] if x.function == b.function]
            assert again.detect(b, before)


@pytest.mark.parametrize(
    "item",
    [
        [],
        {"format": 2, "program": "m", "window": 3, "runs": 1, "functions": {}},
        {"format": 1, "program": "m", "window": 0, "runs": 1, "functions": {}},
        {"format": 1, "program": "m", "window": 3, "runs": 0, "functions": {}},
        {
            "format": 1,
            "program": "m",
            "window": 1,
            "runs": 1,
            "functions": {"f": {"allowed": [["teleport", "x"]], "windows": []}},
        },
        {
            "format": 1,
            "program": "m",
            "window": 1,
            "runs": 1,
            "functions": {"f": {"allowed": [], "windows": [[["exec", "x"]]]}},
        },
    ],
)
def test_malformed_models_are_refused(item: object) -> None:
    with pytest.raises(TraceFormatError):
        TraceModel.from_cbor(cose.dumps(item))
    with pytest.raises(TraceFormatError):
        TraceModel.from_cbor(b"\xff")


def test_placeholders_name_the_launch(tmp_path: object) -> None:
    p = Placeholders.of_launch("/opt/m/meter", ["/var/s.txt", "/var/regs", "127.0.0.1:9", "0"], "/")
    assert p.path("/opt/m/meter") == "${exe}"
    assert p.path("/var/regs/energy.reg") == "${arg2}/energy.reg"
    assert p.path("/var/regsX/energy.reg") == "/var/regsX/energy.reg"
    assert p.address("inet", "127.0.0.1:9") == "inet:${arg3}"
    assert p.address("inet", "127.0.0.1:4444") == "inet:127.0.0.1:4444"
