"""How a pipeline reaches its Kafka cluster: servers, security, client settings.

One ``kafka:`` block per spec, shared by the source, every Kafka sink and ``headwater topics``::

    kafka:
      bootstrap_servers: {env: KAFKA_BOOTSTRAP_SERVERS}   # the default
      security_protocol: SASL_SSL
      sasl_mechanism: SCRAM-SHA-512
      sasl_username: {env: KAFKA_USERNAME}
      sasl_password: {env: KAFKA_PASSWORD}                # secrets: env references only
      ssl_ca_location: /etc/ssl/certs/ca.pem

Secrets are read from the environment when a client is made and never printed: ``describe``
gives servers, protocol and user name only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal

from confluent_kafka import KafkaError
from pydantic import AfterValidator, Field, model_validator

from headwater.config import ComponentConfig, EnvRef, Secret
from headwater.kafka.client_log import client_logger

Scalar = str | int | float | bool

# librdkafka keys that carry secrets: they belong in the typed fields, as env references
_SECRET_KEYS = ("password", "secret", "jaas", "oauthbearer.config", "ssl.key.pem")


def _no_secrets(value: dict[str, Scalar]) -> dict[str, Scalar]:
    leaked = [k for k in value if any(s in k.lower() for s in _SECRET_KEYS)]
    if leaked:
        raise ValueError(
            f"client settings {leaked} carry secrets; use sasl_password / ssl_key_password "
            "with {env: VAR_NAME} in the kafka: block instead"
        )
    return value


ClientSettings = Annotated[dict[str, Scalar], AfterValidator(_no_secrets)]
"""Extra librdkafka settings; keys that hold secrets are refused."""


def _value(v: str | EnvRef | None) -> str | None:
    return v.resolve() if isinstance(v, EnvRef) else v


class KafkaConnection(ComponentConfig):
    bootstrap_servers: str | EnvRef = Field(
        default_factory=lambda: EnvRef(env="KAFKA_BOOTSTRAP_SERVERS"),
        description="host:port list, or {env: VAR}; default {env: KAFKA_BOOTSTRAP_SERVERS}.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | EnvRef | None = None
    sasl_password: Secret | None = None
    ssl_ca_location: str | None = Field(default=None, description="CA bundle (PEM) path.")
    ssl_certificate_location: str | None = Field(default=None, description="Client cert path.")
    ssl_key_location: str | None = Field(default=None, description="Client key path.")
    ssl_key_password: Secret | None = None
    client: ClientSettings = Field(
        default_factory=dict, description="Extra librdkafka settings for every client (no secrets)."
    )
    group_prefix: str = Field(
        default="", description="Prefix of every consumer group (one cluster, many deployments)."
    )

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaConnection:
        sasl = self.security_protocol.startswith("SASL")
        given = [
            k for k in ("sasl_mechanism", "sasl_username", "sasl_password") if getattr(self, k)
        ]
        if sasl and len(given) < 3:
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism, "
                "sasl_username and sasl_password"
            )
        if not sasl and given:
            raise ValueError(
                f"{', '.join(given)} given but security_protocol is {self.security_protocol}; "
                "set security_protocol: SASL_SSL (or SASL_PLAINTEXT)"
            )
        return self

    def group(self, name: str) -> str:
        return f"{self.group_prefix}{name}"

    def servers(self) -> str:
        return _value(self.bootstrap_servers) or ""

    def settings(self, **extra: Any) -> dict[str, Any]:
        """librdkafka settings for a client, secrets resolved from the environment."""
        out: dict[str, Any] = {
            **self.client,
            "bootstrap.servers": self.servers(),
            "security.protocol": self.security_protocol,
            "logger": client_logger(),  # not stderr: each distinct problem once a minute
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": _value(self.sasl_username),
            "sasl.password": _value(self.sasl_password),
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": _value(self.ssl_key_password),
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        out.update(extra)
        return out

    def describe(self) -> str:
        """Servers, protocol and user: safe for logs and metadata (no secret values)."""
        user = self.sasl_username
        who = f" as {user.env if isinstance(user, EnvRef) else user}" if user else ""
        return f"{self.servers()} ({self.security_protocol}{who})"

    def merged(self, **overrides: Any) -> KafkaConnection:
        """This connection with the non-empty ``overrides`` applied (the Dagster resource's)."""
        given = {k: v for k, v in overrides.items() if v not in (None, {}, "")}
        if "client" in given:
            given["client"] = {**self.client, **given["client"]}
        return KafkaConnection.model_validate({**self.model_dump(exclude_unset=True), **given})


class ClientErrors:
    """A client's ``error_cb``: keeps the errors librdkafka reports in the background.

    A failed call only says "timed out"; the background errors say why (authentication
    refused, every broker down), so the message the user sees names the cause.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[KafkaError] = []
        # A producer or admin client calls error_cb only from its poll(), which nothing may
        # have called yet: ``serve`` polls it before explaining. (Never a consumer's poll:
        # that takes messages.)
        self.serve: Callable[[], object] | None = None

    def __call__(self, err: KafkaError) -> None:
        with self._lock:
            self.seen = [*self.seen[-9:], err]

    def login_refused(self) -> bool:
        """The cluster refused the credentials: asking again cannot help."""
        with self._lock:
            return any(e.code() == KafkaError._AUTHENTICATION for e in self.seen)

    def explain(self, exc: BaseException | None = None) -> str:
        if self.serve is not None:
            self.serve()
        with self._lock:
            seen = list(self.seen)
        auth = [e for e in seen if e.code() == KafkaError._AUTHENTICATION]
        if auth:
            return (
                f"authentication failed ({auth[-1].str()}); check sasl_mechanism, "
                "sasl_username and the password's environment variable"
            )
        unreachable = (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT)
        down = [e for e in seen if e.code() in unreachable]
        if down:
            return f"no broker answers ({down[-1].str()}); is the cluster up?"
        return str(exc) if exc is not None else "no error reported"
