"""gateway/sessions/sockets.py: the open WebSockets per Okta session and per user, closed on a session's end."""

from __future__ import annotations

from gateway.sessions.sockets import OpenSockets

S1, S2, S3 = "idxAAAAAAAAAAAAAAAAAAAAAA", "idxBBBBBBBBBBBBBBBBBBBBBB", "idxCCCCCCCCCCCCCCCCCCCCCC"
ALICE = ("00u1a2b3c4d5e6f7g8h9", "alice@example.com")
BOB = ("00uBOBbobBOBbobBOBbo", "bob@example.com")


def test_end_closes_every_socket_of_the_session_only():
    sockets = OpenSockets()
    a, b, c = sockets.opened(S1, ALICE), sockets.opened(S1, ALICE), sockets.opened(S2, ALICE)
    assert sockets.end(S1) == 2
    assert a.is_set() and b.is_set() and not c.is_set()
    assert sockets.end(S1) == 0 and len(sockets) == 1


def test_end_user_closes_the_sessions_found_by_any_of_the_keys():
    sockets = OpenSockets()
    a, b, c = sockets.opened(S1, ALICE[:1]), sockets.opened(S2, ALICE[1:]), sockets.opened(S3, BOB)
    assert sockets.end_user(list(ALICE)) == 2
    assert a.is_set() and b.is_set() and not c.is_set()
    assert sockets.end_user(list(ALICE)) == 0 and sockets.sessions() == [S3]


def test_a_closed_socket_is_no_longer_counted_nor_closed_later():
    sockets = OpenSockets()
    first, second = sockets.opened(S1, ALICE), sockets.opened(S1, ALICE)
    sockets.closed(S1, first)
    assert len(sockets) == 1 and sockets.end_user(list(ALICE)) == 1
    assert second.is_set() and not first.is_set()


def test_closing_twice_or_an_unknown_socket_is_harmless():
    sockets = OpenSockets()
    stop = sockets.opened(S1, ALICE)
    sockets.closed(S1, stop)
    sockets.closed(S1, stop)
    sockets.closed(S2, stop)
    assert len(sockets) == 0 and sockets.sessions() == []


def test_sessions_whose_sockets_all_closed_are_not_kept_for_their_user():
    """A long-running gateway opens sockets for ever more sessions: once a session's last socket closes (or the
    session ends), nothing of it may stay behind in the per-user index."""
    sockets = OpenSockets()
    for i in range(1000):
        session = f"idx{i:022d}"
        stop = sockets.opened(session, ALICE)
        sockets.closed(session, stop)
    sockets.opened(S1, BOB)
    sockets.end(S1)
    sockets.opened(S2, ALICE)
    sockets.end_user(list(ALICE))
    assert len(sockets) == 0
    assert sockets._users == {} and sockets._keys == {}
