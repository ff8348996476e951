"""The store against a dict: random puts, overwrites, policy changes, deletes, node losses."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from meterseal.errors import ObjectNotFound
from meterseal.kvs.policy import ErasureCoded, Hybrid, Policy, Replication
from meterseal.kvs.repair import scrub, sweep
from tests.kvs.store_fixtures import SMALL_CHUNK, memory_store

T = TypeVar("T")
NODES = 6
POLICIES: list[Policy] = [Replication(1), Replication(3), ErasureCoded(3, 2), Hybrid(2, 1)]
names = st.sampled_from(["a", "a/b", "b", "c/d/e", "ü"])


class StoreModel(RuleBasedStateMachine):
    """A store over memory nodes and the dict it should behave like."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store, self.nodes, _ = memory_store(NODES, yielding=True)
        self.model: dict[str, tuple[bytes, Policy]] = {}

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.loop.close()

    @rule(name=names, data=st.binary(max_size=4 * SMALL_CHUNK), policy=st.sampled_from(POLICIES))
    def put(self, name: str, data: bytes, policy: Policy) -> None:
        info = self.run(self.store.put_bytes("b", name, data, policy))
        assert info.size == len(data)
        self.model[name] = (data, policy)

    @rule(name=names, policy=st.sampled_from(POLICIES))
    def set_policy(self, name: str, policy: Policy) -> None:
        if name not in self.model:
            try:
                self.run(self.store.set_policy("b", name, policy))
            except ObjectNotFound:
                return
            raise AssertionError("set_policy of a missing object")
        self.run(self.store.set_policy("b", name, policy))
        self.model[name] = (self.model[name][0], policy)

    @rule(name=names)
    def delete(self, name: str) -> None:
        assert self.run(self.store.delete("b", name)) == (name in self.model)
        self.model.pop(name, None)

    @rule(name=names, a=st.integers(0, 300), b=st.integers(0, 300), lost=st.data())
    def read_with_tolerated_losses(self, name: str, a: int, b: int, lost: st.DataObject) -> None:
        if name not in self.model:
            return
        data, policy = self.model[name]
        down = lost.draw(st.sets(st.integers(0, NODES - 1), max_size=policy.tolerates))
        for i in down:
            self.nodes[i].up = False
        try:
            start, end = sorted((min(a, len(data)), min(b, len(data))))
            assert self.run(self.store.get_bytes("b", name, start, end)) == data[start:end]
        finally:
            for i in down:
                self.nodes[i].up = True

    @precondition(lambda self: all(p.tolerates >= 1 for _, p in self.model.values()))
    @rule(node=st.integers(0, NODES - 1))
    def lose_a_disk_and_scrub(self, node: int) -> None:
        self.nodes[node].blobs.clear()
        report = self.run(scrub(self.store, ["b"]))
        assert report.unrepaired == 0, report.problems

    @invariant()
    def listing_and_storage_match_the_model(self) -> None:
        page = self.run(self.store.list("b"))
        assert [o.name for o in page.objects] == sorted(self.model)
        assert {o.name: o.policy for o in page.objects} == {
            n: p for n, (_, p) in self.model.items()
        }
        report = self.run(sweep(self.store, ["b"], {}, grace=0))
        assert report.deleted == 0  # nothing unreferenced is ever left behind


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
