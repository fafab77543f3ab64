"""decide(): what the gateway does with one request of a bound route, given what it knows.

Rules of this module:
- Pure: no I/O, no aiohttp, no clock of its own. Everything it needs comes in as plain values (`Facts`, built by
  keyword, the route's `SessionRules`, the mode in force, `now` in epoch seconds); a `Decision` comes out.
- Every rule of "forward, end, relogin, unavailable, observe" is here, and only here: what a tombstone or a
  watermark voids, which session Okta is asked about (`session_to_validate()`), what a sign-in at the ACS binds
  (`sign_in_outcome()`), when a binding is sealed again (`Decision.touch`, `Decision.rekey`), and which open
  WebSockets close (`socket_decision()`). The shell (enforcement/enforcer.py per request, enforcement/sweep.py
  for open WebSockets) gathers the facts, asks, and carries the answer out; it decides nothing itself.
- A request without an app session cookie has nothing to protect: it is forwarded (the app will ask for sign-in).
- An app session lives exactly as long as the Okta session it was born from. It is ended when its binding was
  revoked (the revocation store holds a tombstone of its session, or a watermark of its user later than the
  binding's `bound_at`: that needs no word from Okta, and Okta is not asked), when the
  Okta session is gone (404, ended, expired: `now >= expiresAt`), is not fully signed in (`MFA_REQUIRED`,
  `MFA_ENROLL`), belongs to another user than the binding says, when the browser now presents another Okta
  session than the one the binding names, or when the gateway's own idle timeout has passed since the binding's
  last activity.
- An app session with no valid binding is unbound, and the route's `unbound` rule decides (`relogin` ends it,
  `allow` forwards it), whatever Okta would say. A session id that a source (Okta's cookie, a trusted header)
  names never binds it: a claim says which Okta session the browser holds, not whose app session this is, and
  the gateway knows an app session's user only from the binding made at its sign-in (no app profile reveals it
  otherwise). Bound from a claim, Bob's app session presented with Alice's session id would be served as Bob
  and live as long as Alice's session.
- A user-wide revocation at T (suspend, admin clear, Universal Logout, a user-scoped logout) ends every binding
  made before T. When Okta ended every session of the user at T (all but Universal Logout), a session Okta says
  was created before T binds nothing either (`revoked_before()`): a sign-in after T carrying one (an assertion
  held back from before T) is refused, whatever a cache or a lookup in flight still says of it.
- A claim never moves a binding either: a bound session whose browser names another Okta session is ended,
  without asking Okta about either.
- A sign-in binds (`sign_in_outcome()`) only a session Okta says is signed in, whose login is the assertion's
  NameID (case-insensitive), and that Okta did not create before it ended every session of the user. An end
  because Okta says the session is gone or expired (`ENDED_IN_OKTA`) is itself a revocation (source `lookup`).
- An open WebSocket makes no requests: the sweep asks `socket_decision()` about its session now and then, and
  closes it for the same Okta answers that end a request (gone, not signed in, expired); while Okta cannot say
  it stays open.
- When Okta cannot say (and the route's fail mode allowed no grace) the answer for a bound session is
  UNAVAILABLE, never an end: an outage must not log anybody out.
- `observe` computes the same decision and forwards anyway; `off` forwards without deciding anything.
- A forwarded request of a bound session asks for the binding to be re-saved (`touch`) only when its last
  activity is older than `touch_every`, and for the Okta session to be refreshed (`extend_okta`) only when it was
  not refreshed for `extend_okta_every`: both cost I/O or a Set-Cookie, so never on every request. A binding
  opened with a key other than the one that seals (`stale_key`: keys were rotated) is sealed again under the
  current key (`rekey`) on its first forwarded request.
- `holds_until()` says how long a plain forward stays the decision for the same facts: until the first moment a
  rule of time can turn it (expiresAt, the idle timeout, the next touch or refresh). Only a change in what Okta
  says can turn it sooner, and the shell sees that as a new cache entry.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..plugin import SignIn
from ..settings import Mode, SessionRules, Unbound
from .binding import Binding


class Action(enum.StrEnum):
    FORWARD = "forward"
    END = "end"  # end the app session: the request does not reach the app
    UNAVAILABLE = "unavailable"  # Okta cannot say and the fail mode refuses: 503


class OktaState(enum.Enum):
    SIGNED_IN = "signed_in"  # ACTIVE
    NOT_SIGNED_IN = "not_signed_in"  # MFA_REQUIRED, MFA_ENROLL
    GONE = "gone"  # unknown, ended, expired, or not an Okta id
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class OktaView:
    """What Okta (through the cache) says of the session: its state, and for a known session who and until when."""

    state: OktaState
    user_id: str = ""
    login: str = ""
    expires_at: float = 0.0


@dataclass(slots=True, kw_only=True)  # built per request: not frozen, which costs ~0.4 us a build
class Facts:
    """What the enforcement shell learnt of one request: first all but Okta's answer, then (when
    `session_to_validate()` names a session) `okta` and `last_extended`; nothing else changes once built."""

    has_app_session: bool
    binding: Binding | None  # a binding that belongs to this app session, or None
    stale_key: bool = False  # the binding was opened with a key other than the one that seals now
    claimed_session_id: str | None = None  # what a session-id source (cookie, header) names: checked, never bound
    session_ended_at: float | None = None  # the revocation store's tombstone of the bound session, if any
    user_revoked_before: float = 0.0  # the revocation store's watermark of the bound user (0: none)
    okta: OktaView | None = None  # Okta's answer for session_to_validate(); None when Okta was not asked
    last_extended: float | None = None  # when this gateway last refreshed the Okta session


@dataclass(frozen=True, slots=True)
class SignInFacts:
    """What the shell learnt of a sign-in the app accepted, once Okta was asked about the assertion's session."""

    name_id: str  # the assertion's NameID
    okta: OktaView  # what Okta says of the assertion's session
    created_at: float | None  # when Okta created it (None: Okta did not say)
    okta_ended_before: float  # before when Okta ended every session of the user, as the store was told (0: never)


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action  # what is done
    reason: str
    would: Action  # what `enforce` would do (the same as action except in observe mode)
    touch: bool = False  # seal the binding again with its last activity now
    extend_okta: bool = False
    rekey: bool = False  # seal the binding again under the current key (keys were rotated)


FORWARD = Decision(Action.FORWARD, "ok", Action.FORWARD)
SIGNED_IN = OktaState.SIGNED_IN
NOTHING_TO_PROTECT = Decision(Action.FORWARD, "no_app_session", Action.FORWARD)
OFF = Decision(Action.FORWARD, "policy_off", Action.FORWARD)
UNBOUND_ALLOWED = Decision(Action.FORWARD, "unbound_allowed", Action.FORWARD)
KEEP_OPEN = Decision(Action.FORWARD, "ok", Action.FORWARD)  # socket_decision(): the WebSocket stays open
ENDED_IN_OKTA = frozenset({"okta_session_ended", "okta_session_expired"})  # ends that are revocations (lookup)


def decide(facts: Facts, rules: SessionRules, mode: Mode, now: float) -> Decision:
    if mode is Mode.OFF:
        return OFF
    decision = _enforce(facts, rules, now)
    if mode is Mode.OBSERVE and decision.action is not Action.FORWARD:
        return Decision(Action.FORWARD, decision.reason, decision.action)
    return decision


def holds_until(facts: Facts, rules: SessionRules) -> float:
    """Until when decide() keeps answering a plain FORWARD for these facts (the Okta view unchanged); -inf when
    the facts are not those of a bound session it would forward."""
    binding, okta = facts.binding, facts.okta
    if (binding is None or okta is None or facts.claimed_session_id is not None or okta.state is not SIGNED_IN
            or facts.stale_key or _revoked(facts, binding)):
        return NEVER
    until = min(okta.expires_at, binding.last_activity + rules.touch_every)
    if rules.idle_timeout is not None:
        until = min(until, binding.last_activity + rules.idle_timeout)
    if rules.extend_okta_every is not None:
        if facts.last_extended is None:
            return NEVER
        until = min(until, facts.last_extended + rules.extend_okta_every)
    return until


NEVER = float("-inf")


def revoked_before(watermark: float, began_at: float | None) -> bool:
    """Whether a user-wide revocation at `watermark` voids what began at `began_at`: a binding (its bound_at,
    against the user's watermark) or an Okta session (its createdAt, against when Okta ended the user's
    sessions). None, a createdAt Okta did not give, is not before anything: the cache eviction and Okta decide."""
    return began_at is not None and began_at < watermark


def session_to_validate(facts: Facts) -> str | None:
    """The Okta session decide() needs Okta's word on for these facts, or None: the bound one, unless its binding
    is void already (revoked) or the browser names another session (ended either way)."""
    binding = facts.binding
    if binding is None or not facts.has_app_session or _revoked(facts, binding):
        return None
    claimed = facts.claimed_session_id
    return binding.session_id if claimed is None or claimed == binding.session_id else None


def sign_in_outcome(facts: SignInFacts) -> str:
    """"bound", or why a sign-in the app accepted binds nothing. A session Okta created before Okta ended every
    session of its user binds nothing (`revoked_before`), even if a cache entry or a lookup from before calls it
    alive."""
    okta = facts.okta
    if okta.state is OktaState.UNAVAILABLE:
        return "okta_unavailable"
    if okta.state is not SIGNED_IN:
        return "okta_session_not_signed_in"
    if okta.login.lower() != facts.name_id.strip().lower():
        return "login_mismatch"
    if revoked_before(facts.okta_ended_before, facts.created_at):
        return "revoked"
    return "bound"


def unbindable_sign_in(refused: str | None, signed_in: SignIn | None) -> str:
    """Why a sign-in the app accepted binds nothing before Okta is asked: its ACS form could be read two ways
    (`ambiguous_<why>`), its assertion could not be read, or it names no Okta session."""
    if refused is not None and refused != "no_saml_response":
        return f"ambiguous_{refused}"
    return "unreadable" if signed_in is None else "no_session_attribute"


def socket_decision(okta: OktaView, now: float) -> Decision:
    """What becomes of an open WebSocket whose session Okta now describes so: END closes it, anything else keeps it
    open (an outage closes nothing)."""
    ended = _okta_refusal(okta, now)
    return ended if ended is not None and ended.action is Action.END else KEEP_OPEN


def _revoked(facts: Facts, binding: Binding) -> bool:
    return facts.session_ended_at is not None or revoked_before(facts.user_revoked_before, binding.bound_at)


def _enforce(facts: Facts, rules: SessionRules, now: float) -> Decision:
    if not facts.has_app_session:
        return NOTHING_TO_PROTECT
    binding, okta = facts.binding, facts.okta
    if binding is None:
        return _unbound(rules)
    if _revoked(facts, binding):
        return _end("revoked")
    if facts.claimed_session_id is not None and facts.claimed_session_id != binding.session_id:
        return _end("okta_session_changed")
    if okta is None:  # the shell always validates a bound session; no answer is no session
        return _end("okta_session_ended")
    ended = _okta_refusal(okta, now)
    if ended is not None:
        return ended
    if okta.user_id and okta.user_id != binding.user_id:
        return _end("okta_user_changed")
    if rules.idle_timeout is not None and now - binding.last_activity >= rules.idle_timeout:
        return _end("idle_timeout")
    touch = now - binding.last_activity >= rules.touch_every
    extend = rules.extend_okta_every is not None and (
        facts.last_extended is None or now - facts.last_extended >= rules.extend_okta_every
    )
    if not (touch or extend or facts.stale_key):
        return FORWARD
    return Decision(Action.FORWARD, "ok", Action.FORWARD, touch=touch, extend_okta=extend, rekey=facts.stale_key)


def _unbound(rules: SessionRules) -> Decision:
    if rules.unbound is Unbound.ALLOW:
        return UNBOUND_ALLOWED
    return _end("unbound")


def _okta_refusal(okta: OktaView, now: float) -> Decision | None:
    """None when Okta vouches for the session now; otherwise the decision that follows."""
    if okta.state is OktaState.UNAVAILABLE:
        return Decision(Action.UNAVAILABLE, "okta_unavailable", Action.UNAVAILABLE)
    if okta.state is OktaState.GONE:
        return _end("okta_session_ended")
    if okta.state is OktaState.NOT_SIGNED_IN:
        return _end("okta_not_signed_in")
    if now >= okta.expires_at:
        return _end("okta_session_expired")
    return None


def _end(reason: str) -> Decision:
    return Decision(Action.END, reason, Action.END)
