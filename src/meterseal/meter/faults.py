"""Fault and fraud injection for simulated meters: pure transformations of what a meter sends.

A `FaultPlan` turns the stream of packets a meter would send into the stream it does send
(dropped, duplicated, reordered, corrupted, replayed old packets, signed with a wrong key,
clock-skewed). Each injected packet is labelled, so tests and demos know what the head-end
should do with it. Fraud hooks rewrite readings *before* sealing, so the sender is unchanged.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from meterseal.model import Reading

FraudHook = Callable[[Reading], Reading]


class Fault(enum.StrEnum):
    """What was done to a packet on its way out."""

    NONE = "none"
    DROP = "drop"  # never sent: the billing issue sees a gap
    DUPLICATE = "duplicate"  # sent twice: stored once
    REORDER = "reorder"  # swapped with its successor: both stored
    CORRUPT = "corrupt"  # one bit flipped: refused
    REPLAY = "replay"  # an old packet sent again: stored once (it is a duplicate)
    WRONG_KEY = "wrong_key"  # signed by a key the registry does not know for this meter
    CLOCK_SKEW = "clock_skew"  # timestamp far in the future: refused


@dataclass(frozen=True)
class FaultPlan:
    """Per-packet probabilities of each fault; all zero means an honest, perfect meter."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    replay: float = 0.0
    wrong_key: float = 0.0
    clock_skew: float = 0.0
    skew_seconds: int = 6 * 3600

    @classmethod
    def every_fault(cls, rate: float = 0.05) -> FaultPlan:
        """Each fault at `rate` (twice that for duplicates and reordering); skew into the future."""
        return cls(
            drop=rate,
            duplicate=2 * rate,
            reorder=2 * rate,
            corrupt=rate,
            replay=rate,
            wrong_key=rate,
            clock_skew=rate,
            skew_seconds=2 * 86_400,
        )

    def pick(self, rng: random.Random) -> Fault:
        """Draw at most one fault for the next reading."""
        roll = rng.random()
        for fault in (Fault.DROP, Fault.DUPLICATE, Fault.REORDER, Fault.CORRUPT, Fault.REPLAY):
            roll -= getattr(self, fault.value)
            if roll < 0:
                return fault
        for fault, p in ((Fault.WRONG_KEY, self.wrong_key), (Fault.CLOCK_SKEW, self.clock_skew)):
            roll -= p
            if roll < 0:
                return fault
        return Fault.NONE


@dataclass(frozen=True)
class Planned:
    """One reading and the fault planned for it (decided before sealing)."""

    reading: Reading
    fault: Fault


def plan_readings(
    readings: list[Reading], plan: FaultPlan, rng: random.Random, fraud: FraudHook | None = None
) -> list[Planned]:
    """Decide each reading's fault; apply clock skew and fraud to the reading itself."""
    planned = []
    for reading in readings:
        fault = plan.pick(rng)
        if fault is Fault.CLOCK_SKEW:
            reading = replace(reading, timestamp=reading.timestamp + plan.skew_seconds)
        if fraud is not None:
            reading = fraud(reading)
        planned.append(Planned(reading, fault))
    return planned


def flip_bit(packet: bytes, rng: random.Random) -> bytes:
    """The packet with one random bit flipped."""
    bit = rng.randrange(len(packet) * 8)
    out = bytearray(packet)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def wire_order(
    sealed: list[tuple[Planned, bytes]], rng: random.Random
) -> list[tuple[Fault, bytes]]:
    """The packets as they go on the wire, with drops, copies, swaps and bit flips applied."""
    out: list[tuple[Fault, bytes]] = []
    sent: list[bytes] = []
    i = 0
    while i < len(sealed):
        item, data = sealed[i]
        fault = item.fault
        # Swap only with an honest successor, so every packet keeps its own label.
        if fault is Fault.REORDER and i + 1 < len(sealed) and sealed[i + 1][0].fault is Fault.NONE:
            out.append((Fault.REORDER, sealed[i + 1][1]))
            out.append((Fault.REORDER, data))
            sent += [sealed[i + 1][1], data]
            i += 2
            continue
        if fault is Fault.DROP:
            out.append((Fault.DROP, b""))
        elif fault is Fault.CORRUPT:
            out.append((Fault.CORRUPT, flip_bit(data, rng)))
        else:
            # The packet itself goes out honest; a DUPLICATE or REPLAY label marks the extra copy.
            own = Fault.NONE if fault in (Fault.DUPLICATE, Fault.REPLAY, Fault.REORDER) else fault
            out.append((own, data))
            if fault not in (Fault.WRONG_KEY, Fault.CLOCK_SKEW):
                sent.append(data)  # a replay re-sends an old packet the head-end accepted
            if fault is Fault.DUPLICATE:
                out.append((Fault.DUPLICATE, data))
            if fault is Fault.REPLAY and len(sent) > 1:
                out.append((Fault.REPLAY, rng.choice(sent[:-1])))
        i += 1
    return [(fault, data) for fault, data in out if fault is not Fault.DROP]
