"""`bench deployments` leaves no stream behind, whichever step of a run fails."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from meterseal.bench import deployments


class _Served:
    def __init__(self, fail_stop: bool) -> None:
        self.fail_stop = fail_stop
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True
        if self.fail_stop:
            raise RuntimeError("stop failed")


@pytest.fixture
def dropped(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prefixes whose streams the bench dropped."""
    calls: list[str] = []
    monkeypatch.setattr(
        deployments, "_drop_streams", lambda world, prefix, mode: calls.append(prefix)
    )
    return calls


def _world() -> Any:
    return SimpleNamespace(fresh_store=lambda: "sqlite://", month={"M": [b"p"] * 4})


def test_a_run_that_fails_to_start_drops_its_streams(
    monkeypatch: pytest.MonkeyPatch, dropped: list[str]
) -> None:
    def serve(world: Any, mode: str, url: str, workers: int, prefix: str) -> Any:
        raise RuntimeError("supervisor never ready")

    monkeypatch.setattr(deployments, "_serve", serve)
    with pytest.raises(RuntimeError, match="never ready"):
        deployments.run_modes(_world(), ["services"], lambda mode, n: None)
    assert len(dropped) == 1


def test_every_run_is_stopped_and_dropped_when_one_stop_fails(
    monkeypatch: pytest.MonkeyPatch, dropped: list[str]
) -> None:
    served = [_Served(fail_stop=True), _Served(fail_stop=False)]
    prefixes: list[str] = []

    def serve(world: Any, mode: str, url: str, workers: int, prefix: str) -> Any:
        prefixes.append(prefix)
        return served[len(prefixes) - 1]

    def send(run: Any, chunk: Any, advance: Any) -> None:
        raise ConnectionError("head-end gone")

    monkeypatch.setattr(deployments, "_serve", serve)
    monkeypatch.setattr(deployments, "_send_chunk", send)
    with pytest.raises(RuntimeError, match="stop failed"):
        deployments.run_modes(_world(), ["services", "trusted"], lambda mode, n: None)
    assert all(s.stopped for s in served)
    assert sorted(dropped) == sorted(prefixes)
