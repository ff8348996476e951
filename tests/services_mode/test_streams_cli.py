"""`meterseal service streams`: an operator lists and deletes a deployment's streams."""

from __future__ import annotations

import asyncio

from meterseal.services.bus import PACKETS
from meterseal.services.nats_bus import NatsBus
from tests.command_line import invoke


def test_list_then_delete_a_prefix_s_streams(nats_url: str, prefix: str) -> None:
    async def fill() -> None:
        bus = await NatsBus.connect(nats_url, prefix=prefix)  # creates the three streams
        try:
            await bus.publish(PACKETS, b"sealed", msg_id="one")
        finally:
            await bus.close()

    asyncio.run(fill())
    base = ["service", "streams", "--nats", nats_url, "--prefix", prefix]
    listed = invoke(base)
    assert listed.exit_code == 0, listed.output
    up = prefix.upper()
    assert listed.stdout.splitlines() == [
        f"{up}MS_BILLING  0 messages",
        f"{up}MS_PACKETS  1 messages",
        f"{up}MS_VERIFIED  0 messages",
    ]
    assert f"{up}MS_PACKETS" in invoke([*base, "--all"]).stdout
    deleted = invoke([*base, "--delete"])
    assert deleted.exit_code == 0, deleted.output
    assert sorted(deleted.stdout.splitlines()) == [
        f"deleted {up}MS_BILLING",
        f"deleted {up}MS_PACKETS",
        f"deleted {up}MS_VERIFIED",
    ]
    assert invoke(base).stdout.startswith(f"no streams of prefix {prefix!r} on nats://")


def test_delete_takes_one_prefix(nats_url: str) -> None:
    result = invoke(["service", "streams", "--nats", nats_url, "--all", "--delete"])
    assert result.exit_code == 2
    assert "--delete removes one prefix's streams" in result.stderr


def test_a_deployment_does_not_join_streams_another_deployment_owns(
    nats_url: str, prefix: str
) -> None:
    # Two deployments given the same name (e.g. both made by `meterseal init my-utility`)
    # share a stream prefix: the second one's workers would take the first one's packets,
    # fail to open them and quarantine them in the wrong store. It is refused at connect.
    from meterseal.services.bus import BusError

    async def connect(owner: str) -> None:
        bus = await NatsBus.connect(nats_url, prefix=prefix, owner=owner)
        await bus.close()

    asyncio.run(connect("ca-of-north"))
    asyncio.run(connect("ca-of-north"))  # the same deployment again: fine
    try:
        asyncio.run(connect("ca-of-south"))
    except BusError as exc:
        said = str(exc)
    else:
        raise AssertionError("a second deployment joined the first one's streams")
    assert f"{prefix.upper()}MS_PACKETS" in said
    assert "another deployment" in said
    assert "deployment.name" in said
    asyncio.run(connect(""))  # no owner (benches, tools): not checked
