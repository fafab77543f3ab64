"""An emulated Okta org (the "Okta sandbox"): the state in org.py, its HTTP face in app.py, serving in serve.py.

It stands in for Okta in tests, benchmarks and the demo, and behaves as shared/okta-reference.md and the seed
documents say, not as would be convenient for the gateway. org.py states the rules.
"""
