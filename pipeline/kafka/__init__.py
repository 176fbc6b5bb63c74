"""Kafka client plumbing shared by the agents, the workers and ``pectrack events``:
verified TLS (:mod:`~pipeline.kafka.tls`) and reading a topic to its end
(:mod:`~pipeline.kafka.read`)."""
