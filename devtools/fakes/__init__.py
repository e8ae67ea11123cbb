"""Local fakes of third-party APIs, built from their documented contracts, for tests and demos."""
