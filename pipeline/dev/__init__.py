"""Development tooling, installed with the ``dev`` extra: the embedded Kafka-protocol
broker (:mod:`~pipeline.dev.embedded`), the demo (:mod:`~pipeline.dev.demo`), dashboard
rendering (:mod:`~pipeline.dev.render`) and process statistics for tests and benchmarks.
No production module imports it (an import-linter contract)."""
