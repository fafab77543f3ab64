"""App sessions tied to Okta sessions: decide() and its rules (policy), the cached validation (cache, validation),
the sealed binding (binding, binding_cookie), the pure readers of cookies and SAML, the app's side of a session
(app_side) and its open WebSockets (sockets). Enforcement, the shell that uses them per request, sits above."""
