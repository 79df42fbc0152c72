"""The open-files budget: one descriptor per idle client, back-end connections in use counted."""

from __future__ import annotations

import pytest

from gateway.traffic.limits import FILES_RESERVED, descriptor_budget


@pytest.mark.parametrize("open_files", [120, 1024, 20_000, 65_536])
def test_clients_and_the_back_end_reserve_never_exceed_the_limit(open_files: int) -> None:
    budget = descriptor_budget(open_files)
    assert budget.clients + budget.backend_reserve + FILES_RESERVED == open_files
    assert budget.backend_reserve >= 16


def test_idle_clients_take_one_descriptor_each() -> None:
    # The systemd unit's LimitNOFILE=65536 holds the default max_connections 10000 with room to
    # spare, and the benchmark's 20,000 holds 10,000 idle terminals (two per connection: 9,968).
    assert descriptor_budget(65_536).clients >= 50_000
    assert descriptor_budget(20_000).clients > 10_000


def test_back_ends_in_use_make_room_for_fewer_new_clients() -> None:
    budget = descriptor_budget(1024)
    assert budget.admits(clients=0, backends=0)
    assert budget.admits(clients=budget.clients - 1, backends=0)
    assert not budget.admits(clients=budget.clients, backends=0)
    # Every client busy with a back end: the clients and their back ends fill the limit together,
    # and the reserve stays free for the next back-end connection.
    half = (budget.usable - budget.backend_reserve) // 2
    assert not budget.admits(clients=half, backends=half)
    assert budget.admits(clients=half - 1, backends=half)
    for clients in range(0, budget.clients, 7):
        for backends in range(0, budget.usable, 11):
            if budget.admits(clients, backends):
                assert clients + 1 + backends + budget.backend_reserve <= budget.usable


def test_a_tiny_limit_still_admits_some() -> None:
    budget = descriptor_budget(40)
    assert budget.clients >= 16 and budget.admits(0, 0)
