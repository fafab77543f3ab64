"""BindingCodec (gateway/sessions/binding.py): sealing, opening, key rotation, fingerprints, hostile cookie values."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from cryptography.fernet import Fernet

from gateway.sessions.binding import Binding, BindingCodec, BindingKeyError, Opened, Remembered

OLD = "fOhJQXD8l0yZ0hn6cx6-d9Hkcb1wOlc6L5rbYJkp6Ls="
NEW = "q3Pp2pz8m7s6b5Kx9yW1vT0uR4eE8iI2oO6aA0sS3dU="
STRANGER = "Zk9yZWlnbi1rZXktbm90LWNvbmZpZ3VyZWQtaGVyZSE="
T0 = 1_700_000_000.0
ROUTE = "hr"
BINDING = Binding("102abcDEFghiJKLmnoPQRst", "00u0abcdefGHIJKLMNOP", "alice@example.com", "fp0",
                  bound_at=T0, last_activity=T0 + 12.5)


def test_the_test_keys_are_distinct_fernet_keys():
    for key in (OLD, NEW, STRANGER):
        Fernet(key)
    assert len({OLD, NEW, STRANGER}) == 3


# --- seal and open ------------------------------------------------------------------------------------------------


def test_seal_then_open_gives_the_binding_back_with_the_current_key():
    codec = BindingCodec([NEW])
    opened = codec.open(codec.seal(BINDING, ROUTE))
    assert opened == Opened(BINDING, 0, ROUTE) and not opened.stale_key


def test_times_survive_the_round_trip_to_the_millisecond():
    b = replace(BINDING, bound_at=T0 + 0.1234567, last_activity=T0 + 99.9999)
    codec = BindingCodec([NEW])
    opened = codec.open(codec.seal(b, ROUTE))
    assert opened is not None
    assert opened.binding.bound_at == pytest.approx(T0 + 0.123, abs=1e-3)
    assert opened.binding.last_activity == pytest.approx(T0 + 100.0, abs=1e-3)


def test_non_ascii_fields_survive_the_round_trip():
    b = replace(BINDING, login="zoë.łukasz@例え.jp")
    codec = BindingCodec([NEW])
    opened = codec.open(codec.seal(b, ROUTE))
    assert opened is not None and opened.binding.login == "zoë.łukasz@例え.jp"


def test_two_seals_of_one_binding_differ_but_both_open():
    codec = BindingCodec([NEW])
    first, second = codec.seal(BINDING, ROUTE), codec.seal(BINDING, ROUTE)
    assert first != second  # Fernet's IV: nothing can be learnt by comparing cookies
    assert codec.open(first) == codec.open(second) == Opened(BINDING, 0, ROUTE)


def test_the_sealed_text_is_aiohttp_sessions_cookie_json():
    sealed = BindingCodec([NEW]).seal(BINDING, ROUTE)
    data = json.loads(Fernet(NEW).decrypt(sealed.encode()))
    assert set(data) == {"created", "session"}
    assert data["created"] == int(BINDING.bound_at) and isinstance(data["created"], int)
    assert data["session"]["sid"] == BINDING.session_id and data["session"]["uid"] == BINDING.user_id
    assert data["session"]["login"] == BINDING.login and data["session"]["fp"] == BINDING.app_fingerprint


def test_the_sealed_text_is_cookie_safe_ascii():
    sealed = BindingCodec([NEW]).seal(BINDING, ROUTE)
    assert sealed.isascii() and not any(c in sealed for c in ' ;,"\\')


def test_a_binding_with_a_256_character_login_seals_far_under_the_cookie_limit():
    b = replace(BINDING, login="a" * 250 + "@x.com", app_fingerprint="A" * 22)
    sealed = BindingCodec([NEW]).seal(b, ROUTE)
    assert len(sealed.encode()) < 1500


def test_an_overlong_login_is_cut_to_256_characters_when_sealed():
    codec = BindingCodec([NEW])
    sealed = codec.seal(replace(BINDING, login="b" * 5000), ROUTE)
    assert len(sealed) < 1500
    opened = codec.open(sealed)
    assert opened is not None and opened.binding.login == "b" * 256


def test_touched_changes_only_the_last_activity():
    assert BINDING.touched(T0 + 500) == replace(BINDING, last_activity=T0 + 500)


# --- keys and rotation --------------------------------------------------------------------------------------------


def test_a_binding_sealed_with_a_key_that_is_not_configured_does_not_open():
    sealed = BindingCodec([STRANGER]).seal(BINDING, ROUTE)
    assert BindingCodec([NEW, OLD]).open(sealed) is None


def test_a_binding_sealed_with_the_old_key_opens_after_rotation_and_says_its_key_is_stale():
    sealed = BindingCodec([OLD]).seal(BINDING, ROUTE)
    opened = BindingCodec([NEW, OLD]).open(sealed)
    assert opened == Opened(BINDING, 1, ROUTE) and opened.stale_key


def test_resealing_after_rotation_uses_the_new_key():
    rotated = BindingCodec([NEW, OLD])
    resealed = rotated.seal(BINDING, ROUTE)
    assert BindingCodec([NEW]).open(resealed) == Opened(BINDING, 0, ROUTE)
    assert BindingCodec([OLD]).open(resealed) is None


def test_once_the_old_key_is_dropped_its_bindings_no_longer_open():
    sealed = BindingCodec([OLD]).seal(BINDING, ROUTE)
    assert BindingCodec([NEW]).open(sealed) is None


def test_the_first_key_seals():
    sealed = BindingCodec([NEW, OLD]).seal(BINDING, ROUTE)
    Fernet(NEW).decrypt(sealed.encode())  # does not raise


@pytest.mark.parametrize("keys", [[], ()])
def test_no_key_at_all_is_refused(keys):
    with pytest.raises(BindingKeyError):
        BindingCodec(keys)


@pytest.mark.parametrize(
    "bad",
    ["not-a-key", "secret-key-text-" * 3, OLD[:-4], OLD + "AAAA", OLD + NEW, OLD + ";" + NEW, OLD.rstrip("="),
     " " + OLD, "é" * 44, "!" * 43 + "=", "", "   "],
)
def test_a_bad_key_raises_a_binding_key_error_that_never_shows_the_key(bad):
    with pytest.raises(BindingKeyError) as caught:
        BindingCodec([NEW, bad])
    message = str(caught.value)
    assert "key 2" in message and "Fernet" in message
    if bad.strip():
        assert bad.strip() not in message and bad.strip()[:8] not in message
    assert NEW not in message and caught.value.__cause__ is None


def test_a_key_in_standard_base64_is_taken_as_fernet_takes_it():
    standard = OLD.replace("-", "+")  # `openssl rand -base64 32` writes + and /
    codec = BindingCodec([standard])
    assert Fernet(standard).decrypt(codec.seal(BINDING, ROUTE).encode())


def test_a_key_that_is_not_text_is_refused_without_a_type_error():
    with pytest.raises(BindingKeyError):
        BindingCodec([42])  # type: ignore[list-item]


def test_a_binding_key_error_is_a_value_error():
    assert issubclass(BindingKeyError, ValueError)


# --- hostile cookie values ----------------------------------------------------------------------------------------


def tampered(token: str, at: int) -> str:
    swap = "A" if token[at] != "A" else "B"
    return token[:at] + swap + token[at + 1:]


@pytest.mark.parametrize("at", [0, 5, 20, 60, -10, -1])
def test_a_tampered_binding_does_not_open(at):
    codec = BindingCodec([NEW])
    sealed = codec.seal(BINDING, ROUTE)
    assert codec.open(tampered(sealed, at % len(sealed))) is None


def test_a_truncated_binding_does_not_open():
    codec = BindingCodec([NEW])
    sealed = codec.seal(BINDING, ROUTE)
    assert codec.open(sealed[:-1]) is None and codec.open(sealed[: len(sealed) // 2]) is None


@pytest.mark.parametrize(
    "garbage",
    ["", " ", "x", "null", "{}", "gAAAAA", "gAAAAA" + "=" * 100, "é" * 80, "ﬀ\u0000\udcff", "\x00" * 10,
     "a;b=c", '"quoted"', "A" * 4000, base64.urlsafe_b64encode(b"\x80" + b"\x00" * 72).decode()],
)
def test_garbage_does_not_open_and_raises_nothing(garbage):
    assert BindingCodec([NEW, OLD]).open(garbage) is None


@pytest.mark.parametrize(
    "plain",
    [b"not json", b"\xff\xfe", b"[]", b'"text"', b"null", b"{}", b'{"created": 1}', b'{"session": null}',
     b'{"session": []}', b'{"session": "x"}',
     b'{"session": {"sid": "s", "uid": "u", "login": "l", "fp": "f", "at": 1}}',  # no "last"
     b'{"session": {"sid": 5, "uid": "u", "login": "l", "fp": "f", "at": 1, "last": 1}}',
     b'{"session": {"sid": "s", "uid": null, "login": "l", "fp": "f", "at": 1, "last": 1}}',
     b'{"session": {"sid": "s", "uid": "u", "login": ["l"], "fp": "f", "at": 1, "last": 1}}',
     b'{"session": {"sid": "s", "uid": "u", "login": "l", "fp": {}, "at": 1, "last": 1}}',
     b'{"session": {"sid": "s", "uid": "u", "login": "l", "fp": "f", "at": "soon", "last": 1}}',
     b'{"session": {"sid": "s", "uid": "u", "login": "l", "fp": "f", "at": 1, "last": [1]}}'],
)
def test_a_genuine_token_with_an_unusable_body_does_not_open(plain):
    # only a holder of the key can make these; the codec still answers None rather than raise
    token = Fernet(NEW).encrypt(plain).decode()
    assert BindingCodec([NEW]).open(token) is None


def test_a_genuine_token_with_every_field_opens_and_extra_fields_are_ignored():
    session = {"sid": "s", "uid": "u", "login": "l", "fp": "f", "at": 1, "last": 2.5, "extra": True}
    token = Fernet(NEW).encrypt(json.dumps({"created": 1, "session": session}).encode()).decode()
    assert BindingCodec([NEW]).open(token) == Opened(Binding("s", "u", "l", "f", 1.0, 2.5), 0, None)


# --- fingerprints -------------------------------------------------------------------------------------------------


def test_a_fingerprint_is_stable_and_short():
    codec = BindingCodec([NEW])
    fp = codec.fingerprint("JSESSIONID", "ABC123")
    assert fp == codec.fingerprint("JSESSIONID", "ABC123") == BindingCodec([NEW, OLD]).fingerprint("JSESSIONID",
                                                                                                    "ABC123")
    assert 16 <= len(fp) <= 32 and "=" not in fp


def test_a_fingerprint_never_contains_the_cookie():
    value = "S3cr3tS3ss10nValue"
    fp = BindingCodec([NEW]).fingerprint("JSESSIONID", value)
    assert value not in fp and "JSESSIONID" not in fp


def test_a_fingerprint_is_keyed():
    assert BindingCodec([NEW]).fingerprint("JSESSIONID", "v") != BindingCodec([OLD]).fingerprint("JSESSIONID", "v")


def test_each_configured_key_has_its_own_fingerprint():
    codec = BindingCodec([NEW, OLD])
    assert codec.fingerprint("JSESSIONID", "v", 0) != codec.fingerprint("JSESSIONID", "v", 1)
    assert codec.fingerprint("JSESSIONID", "v", 1) == BindingCodec([OLD]).fingerprint("JSESSIONID", "v")


@pytest.mark.parametrize(("a", "b"), [
    (("JSESSIONID", "v1"), ("JSESSIONID", "v2")),
    (("JSESSIONID", "v"), ("PHPSESSID", "v")),
    (("a", "bc"), ("ab", "c")),
    (("JSESSIONID", "v"), ("JSESSIONID", "v ")),
    (("JSESSIONID", ""), ("JSESSIONID", "v")),
])
def test_a_fingerprint_differs_between_cookie_names_and_values(a, b):
    codec = BindingCodec([NEW])
    assert codec.fingerprint(*a) != codec.fingerprint(*b)


def test_belongs_to_checks_the_app_cookie():
    codec = BindingCodec([NEW])
    b = replace(BINDING, app_fingerprint=codec.fingerprint("JSESSIONID", "abc"))
    opened = codec.open(codec.seal(b, ROUTE))
    assert opened is not None
    assert codec.belongs_to(opened, "JSESSIONID", "abc")
    assert not codec.belongs_to(opened, "JSESSIONID", "abd")
    assert not codec.belongs_to(opened, "PHPSESSID", "abc")
    assert not codec.belongs_to(opened, "JSESSIONID", "")


def test_belongs_to_checks_with_the_key_that_opened_the_binding():
    old = BindingCodec([OLD])
    sealed = old.seal(replace(BINDING, app_fingerprint=old.fingerprint("JSESSIONID", "abc")), ROUTE)
    rotated = BindingCodec([NEW, OLD])
    opened = rotated.open(sealed)
    assert opened is not None and opened.key_index == 1
    assert rotated.belongs_to(opened, "JSESSIONID", "abc")  # the old key's fingerprint, checked with the old key
    assert not rotated.belongs_to(Opened(opened.binding, 0), "JSESSIONID", "abc")


def test_a_fingerprint_made_with_another_key_does_not_belong():
    codec = BindingCodec([NEW])
    foreign = replace(BINDING, app_fingerprint=BindingCodec([STRANGER]).fingerprint("JSESSIONID", "abc"))
    opened = codec.open(codec.seal(foreign, ROUTE))
    assert opened is not None and not codec.belongs_to(opened, "JSESSIONID", "abc")


# --- open_for(): open, check it belongs, remember the answer -----------------------------------------------------


class Counting:
    """Counts the codec's real opens (the work the memo saves)."""

    def __init__(self, codec: BindingCodec, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        real = codec.open

        def counted(sealed: str) -> Opened | None:
            self.calls.append(sealed)
            return real(sealed)

        monkeypatch.setattr(codec, "open", counted)


def sealed_for(codec: BindingCodec, value: str, **changes: str) -> str:
    return codec.seal(replace(BINDING, app_fingerprint=codec.fingerprint("JSESSIONID", value), **changes), ROUTE)


def test_open_for_opens_a_binding_that_belongs_to_the_app_cookie():
    codec = BindingCodec([NEW])
    sealed = sealed_for(codec, "abc")
    opened = codec.open_for(sealed, ROUTE, "JSESSIONID", "abc")
    assert opened is not None and opened.binding.session_id == BINDING.session_id and opened.key_index == 0


@pytest.mark.parametrize(("name", "value"), [("JSESSIONID", "abd"), ("PHPSESSID", "abc"), ("JSESSIONID", "")])
def test_open_for_refuses_a_binding_presented_with_another_app_cookie(name, value):
    codec = BindingCodec([NEW])
    assert codec.open_for(sealed_for(codec, "abc"), ROUTE, name, value) is None


def test_open_for_refuses_garbage():
    assert BindingCodec([NEW]).open_for("garbage", ROUTE, "JSESSIONID", "abc") is None


def test_open_for_after_rotation_checks_with_the_old_key():
    sealed = sealed_for(BindingCodec([OLD]), "abc")
    opened = BindingCodec([NEW, OLD]).open_for(sealed, ROUTE, "JSESSIONID", "abc")
    assert opened is not None and opened.stale_key


def test_open_for_remembers_its_answer(monkeypatch):
    codec = BindingCodec([NEW])
    sealed = sealed_for(codec, "abc")
    counting = Counting(codec, monkeypatch)
    first = codec.open_for(sealed, ROUTE, "JSESSIONID", "abc")
    assert first is not None
    assert codec.open_for(sealed, ROUTE, "JSESSIONID", "abc") is first
    assert counting.calls == [sealed]


def test_open_for_remembers_per_app_cookie(monkeypatch):
    codec = BindingCodec([NEW])
    sealed = sealed_for(codec, "abc")
    counting = Counting(codec, monkeypatch)
    assert codec.open_for(sealed, ROUTE, "JSESSIONID", "abc") is not None
    assert codec.open_for(sealed, ROUTE, "JSESSIONID", "stolen-elsewhere") is None  # a remembered yes is not reused
    assert codec.open_for(sealed, ROUTE, "JSESSIONID", "stolen-elsewhere") is None
    assert codec.open_for(sealed, ROUTE, "JSESSIONID", "abc") is not None
    assert len(counting.calls) == 3  # the refusal for another app cookie is not remembered


def test_open_for_does_not_remember_refusals(monkeypatch):
    # a refusal costs a client nothing to vary: remembering them would let it fill the memo at will
    codec = BindingCodec([NEW])
    counting = Counting(codec, monkeypatch)
    assert codec.open_for("garbage", ROUTE, "JSESSIONID", "v") is None
    assert codec.open_for("garbage", ROUTE, "JSESSIONID", "v") is None
    assert counting.calls == ["garbage", "garbage"] and len(codec._checked) == 0


def test_the_memo_is_bounded_by_bytes_and_forgets_the_oldest(monkeypatch):
    probe = BindingCodec([NEW])
    a, b, c = (sealed_for(probe, "abc", session_id=f"sid{i}") for i in range(3))
    probe.open_for(a, ROUTE, "JSESSIONID", "abc")
    codec = BindingCodec([NEW], remember_bytes=2 * probe._checked.bytes)  # room for two
    counting = Counting(codec, monkeypatch)
    for token in (a, b, a, b, c):
        assert codec.open_for(token, ROUTE, "JSESSIONID", "abc") is not None
    assert counting.calls == [a, b, c]
    opened = codec.open_for(a, ROUTE, "JSESSIONID", "abc")  # forgotten: opened again, with the same answer
    assert opened is not None and opened.binding.session_id == "sid0"
    assert counting.calls == [a, b, c, a]
    assert len(codec._checked) == 2 and codec._checked.bytes <= codec._checked.budget


def test_the_memo_counts_the_bytes_of_large_cookie_values():
    codec = BindingCodec([NEW], remember_bytes=1024 * 1024)
    for i in range(200):
        value = f"{i}-" + "v" * 15_000
        assert codec.open_for(sealed_for(codec, value), ROUTE, "JSESSIONID", value) is not None
    assert 0 < codec._checked.bytes <= 1024 * 1024
    assert len(codec._checked) < 70  # 15 KB values: a count of 10,000 would have held 150 MB


def test_a_remembered_answer_is_the_same_as_a_fresh_one():
    codec = BindingCodec([NEW, OLD])
    sealed = sealed_for(BindingCodec([OLD]), "abc")
    fresh = BindingCodec([NEW, OLD]).open_for(sealed, ROUTE, "JSESSIONID", "abc")
    assert codec.open_for(sealed, ROUTE, "JSESSIONID", "abc") == codec.open_for(sealed, ROUTE, "JSESSIONID", "abc")
    assert codec.open_for(sealed, ROUTE, "JSESSIONID", "abc") == fresh
    assert fresh is not None and fresh.key_index == 1


# --- the route a binding was sealed for ----------------------------------------------------------------------------


def test_a_binding_opens_for_the_route_it_was_sealed_for_only():
    codec = BindingCodec([NEW])
    sealed = sealed_for(codec, "abc")
    assert codec.open_for(sealed, ROUTE, "JSESSIONID", "abc") is not None
    assert codec.open_for(sealed, "wiki", "JSESSIONID", "abc") is None  # remembered for hr: still not for wiki
    assert codec.open_for(sealed, "hr ", "JSESSIONID", "abc") is None
    assert codec.open_for(sealed, ROUTE, "JSESSIONID", "abc") is not None


def test_a_binding_sealed_before_bindings_named_their_route_opens_for_no_route():
    session = {"sid": "s", "uid": "u", "login": "l", "fp": BindingCodec([NEW]).fingerprint("JSESSIONID", "abc"),
               "at": 1, "last": 2}
    token = Fernet(NEW).encrypt(json.dumps({"created": 1, "session": session}).encode()).decode()
    codec = BindingCodec([NEW])
    assert codec.open(token) is not None and codec.open(token).route is None  # type: ignore[union-attr]
    for route in (ROUTE, "", "wiki"):
        assert codec.open_for(token, route, "JSESSIONID", "abc") is None


@pytest.mark.parametrize("route", [5, None, ["hr"], {"r": "hr"}])
def test_a_route_that_is_not_a_name_does_not_open(route):
    session = {"sid": "s", "uid": "u", "login": "l", "fp": "f", "at": 1, "last": 2, "r": route}
    token = Fernet(NEW).encrypt(json.dumps({"created": 1, "session": session}).encode()).decode()
    opened = BindingCodec([NEW]).open(token)
    assert opened is None or opened.route is None


# --- Remembered: a memo bounded by bytes --------------------------------------------------------------------------


def test_remembered_keeps_what_fits_and_lets_the_oldest_go():
    memo: Remembered[str, int] = Remembered(100)
    for i, size in enumerate((40, 40, 40)):
        memo.remember(f"k{i}", i, size)
    assert list(memo.entries) == ["k1", "k2"] and memo.bytes == 80
    memo.remember("big", 9, 101)  # larger than the whole budget: not kept, nothing lost
    assert list(memo.entries) == ["k1", "k2"] and memo.bytes == 80
    memo.remember("k1", 10, 50)  # a key remembered again: its new value and size, its age kept
    assert memo.entries == {"k1": 10, "k2": 2} and memo.bytes == 90
    memo.remember("k3", 3, 20)
    assert memo.entries == {"k2": 2, "k3": 3} and memo.bytes == 60
    memo.remember("k4", 4, 100)
    assert memo.entries == {"k4": 4} and memo.bytes == 100 and len(memo) == 1
