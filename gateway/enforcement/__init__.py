"""The shell around decide(): per request it gathers the facts (cookies, binding, claims, revocations, Okta's
answer), asks sessions/policy.py what to do, and acts (forward, end, 503). It sits above both sessions/ (the
pure rules, the cache, the binding) and revocation/ (the bus, the logout interceptor), which never import it."""
