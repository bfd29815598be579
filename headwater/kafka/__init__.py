"""Kafka plumbing shared by the source, the sink, topic admin and the stream worker."""
