"""Local stand-ins for the outside world, for tests, benchmarks and the demo."""
