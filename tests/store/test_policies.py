"""gateway/store/policies.py: an override as stored (read back as hostile text), and the memory store's copy and
callbacks."""

from __future__ import annotations

import json

import pytest

from gateway.settings import Mode
from gateway.store.policies import MAX_BY, MemoryPolicies, Override, PolicyStore

SWITCH = Override(Mode.OFF, "bearer (session-gateway-cli (ops))", 1_700_000_000.25, Mode.ENFORCE)


def test_an_override_is_stored_as_mode_by_at_from_and_read_back():
    assert json.loads(SWITCH.text()) == {"mode": "off", "by": "bearer (session-gateway-cli (ops))",
                                         "at": 1_700_000_000.25, "from": "enforce"}
    assert Override.read(SWITCH.text()) == SWITCH


@pytest.mark.parametrize("text", [
    None, 1, "", "not json", "[]", "null", '{"mode": "off"}',
    '{"mode": "sometimes", "by": "x", "at": 1, "from": "off"}',
    '{"mode": "off", "by": "x", "at": 1, "from": "later"}',
    '{"mode": "off", "by": 7, "at": 1, "from": "off"}',
    '{"mode": "off", "by": "x", "at": "1", "from": "off"}',
    '{"mode": "off", "by": "x", "at": true, "from": "off"}',
    '{"mode": "off", "by": "x", "at": NaN, "from": "off"}',
    '{"mode": "off", "by": "x", "at": Infinity, "from": "off"}',
    json.dumps({"mode": "off", "by": "x" * (MAX_BY + 1), "at": 1, "from": "off"}),
    "[" * 100_000,
])
def test_anything_but_a_well_formed_override_reads_as_none(text):
    assert Override.read(text) is None


async def test_the_memory_store_changes_its_copy_and_tells_its_callbacks_in_order():
    store: PolicyStore = MemoryPolicies()
    told: list[tuple[str, Override | None]] = []
    store.on_change.append(lambda route, override: told.append((route, override)))
    await store.start()
    assert await store.put("hr", SWITCH) and store.overrides == {"hr": SWITCH}
    assert await store.clear("hr", SWITCH.at + 1) and store.overrides == {}
    assert told == [("hr", SWITCH), ("hr", None)]
    await store.close()
