"""The contracts between pectrack's processes and with its users; imports only the core.

:mod:`~pipeline.contracts.raw` (the ``pec.raw`` record the agents write and the workers
read), :mod:`~pipeline.contracts.topics` (names and defaults), :mod:`~pipeline.contracts.codec`
(the one JSON codec of every record), :mod:`~pipeline.contracts.cloudevents` (the
CloudEvents Kafka binding of the outputs), :mod:`~pipeline.contracts.schemas` (schema names,
versions and URIs), :mod:`~pipeline.contracts.metrics` (every metric, one ``pec_`` prefix)
and :mod:`~pipeline.contracts.headers`.
"""
