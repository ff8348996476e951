"""The supervisor's process plans: one per service process, restarted where it listened."""

from __future__ import annotations

from pathlib import Path

from meterseal.acquisition.headend import HeadEndSettings
from meterseal.services.catalog import ServiceOptions
from meterseal.services.supervisor import plan_processes


def _options(tcp: str, http: str | None) -> ServiceOptions:
    receivers = HeadEndSettings(tcp=tcp, http=http)
    return ServiceOptions(Path("deployment"), "sqlite:///store.db", receivers=receivers)


def _option(argv: tuple[str, ...], option: str) -> str:
    return argv[argv.index(option) + 1]


def test_only_the_receiver_listens() -> None:
    plans = plan_processes(_options("127.0.0.1:0", "127.0.0.1:0"), 2)
    assert [p.label for p in plans] == [
        "receiver",
        "open-verify#0",
        "open-verify#1",
        "anonymize-store#0",
        "anonymize-store#1",
        "billing",
    ]
    assert _option(plans[0].argv, "--tcp") == _option(plans[0].argv, "--http") == "127.0.0.1:0"
    for plan in plans[1:]:
        assert _option(plan.argv, "--tcp") == _option(plan.argv, "--http") == "off"


def test_a_restart_listens_where_the_first_start_bound() -> None:
    receiver, worker = plan_processes(_options("127.0.0.1:0", "127.0.0.1:0"), 1)[:2]
    reported = {
        "tcp": "127.0.0.1:40001",
        "http": "http://127.0.0.1:40002",
        "admin": "http://127.0.0.1:40003",
    }
    pinned = receiver.pinned(reported)
    assert _option(pinned.argv, "--tcp") == "127.0.0.1:40001"
    assert _option(pinned.argv, "--http") == "127.0.0.1:40002"
    assert "--admin" not in pinned.argv  # the admin endpoint may move: it is found by its line
    assert pinned.pinned(reported) == pinned
    assert worker.pinned({"admin": "http://127.0.0.1:40004"}) == worker
    off = plan_processes(_options("127.0.0.1:0", None), 1)[0]
    assert _option(off.pinned({"tcp": "127.0.0.1:40001"}).argv, "--http") == "off"
