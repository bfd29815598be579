"""``KafkaResource``: the Kafka cluster as a Dagster resource, a thin layer over the spec's block.

Every field left unset keeps what the spec's ``kafka:`` block says, so a deployment can point
all pipelines at its cluster without editing specs::

    KafkaResource(bootstrap_servers=EnvVar("KAFKA_BOOTSTRAP_SERVERS"),
                  security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                  sasl_username_env="KAFKA_USERNAME", sasl_password_env="KAFKA_PASSWORD")

Secrets are named by their environment variable (``*_env``), never given as values, so the
UI's resource page shows only variable names.
"""

# no `from __future__ import annotations`: Dagster reads these annotations at runtime

from dagster import ConfigurableResource
from pydantic import Field

from headwater.kafka.connection import KafkaConnection


class KafkaResource(ConfigurableResource):
    """The Kafka cluster the pipelines use; unset fields keep each spec's ``kafka:`` values."""

    bootstrap_servers: str | None = Field(default=None, description="host:port list.")
    security_protocol: str | None = Field(
        default=None, description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: str | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    sasl_username_env: str | None = Field(
        default=None, description="Environment variable holding the SASL user name."
    )
    sasl_password_env: str | None = Field(
        default=None, description="Environment variable holding the SASL password."
    )
    ssl_ca_location: str | None = Field(default=None, description="CA bundle (PEM) path.")
    group_prefix: str | None = Field(
        default=None, description="Prefix of every consumer group, e.g. 'staging-'."
    )
    client: dict[str, str] = Field(
        default_factory=dict, description="Extra librdkafka settings (no secrets)."
    )

    def overrides(self) -> dict:
        """The fields set here, in the spec's ``kafka:`` vocabulary."""
        env = lambda name: {"env": name} if name else None  # noqa: E731
        return {
            k: v
            for k, v in {
                "bootstrap_servers": self.bootstrap_servers,
                "security_protocol": self.security_protocol,
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_username": env(self.sasl_username_env),
                "sasl_password": env(self.sasl_password_env),
                "ssl_ca_location": self.ssl_ca_location,
                "group_prefix": self.group_prefix,
                "client": dict(self.client),
            }.items()
            if v
        }

    def connection(self, spec: KafkaConnection) -> KafkaConnection:
        return spec.merged(**self.overrides())
