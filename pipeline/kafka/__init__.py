"""Kafka client plumbing shared by the agents, the workers and ``pectrack events``:
verified TLS (:mod:`~pipeline.kafka.tls`) and reading a topic to its end
(:mod:`~pipeline.kafka.read`)."""

# The SASL mechanisms pipeline.kafka.sasl speaks (here: known without importing aiokafka).
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
