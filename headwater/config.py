"""Shared pieces of component config models: the strict base model and secret references.

Every component's config model derives from :class:`ComponentConfig` so unknown keys are
errors, and a secret is never a literal in a spec: it is ``{env: VAR_NAME}``.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from headwater.errors import HeadwaterError


class ComponentConfig(BaseModel):
    """Base of every component config model: strict keys, immutable after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvRef(BaseModel):
    """A value read from an environment variable at use time: ``{env: KAFKA_PASSWORD}``.

    It prints masked, so it never lands in logs or Dagster metadata.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str = Field(description="Name of the environment variable holding the value.")

    @field_validator("env")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or not value.replace("_", "").isalnum():
            raise ValueError(f"expected an environment variable name like MY_SECRET, got {value!r}")
        return value

    def resolve(self) -> str:
        try:
            return os.environ[self.env]
        except KeyError:
            raise HeadwaterError(
                f"environment variable {self.env} is not set; the spec reads a secret from it. "
                f"Export {self.env} before running."
            ) from None

    def __repr__(self) -> str:
        return f"EnvRef(env={self.env!r}, value='***')"

    __str__ = __repr__


def _refuse_literal(value: Any) -> Any:
    if isinstance(value, str | int | float):
        raise ValueError(
            "a secret must be an environment-variable reference like {env: VAR_NAME}; "
            "a literal value is refused so that it never sits in a spec file"
        )
    return value


Secret = Annotated[EnvRef, BeforeValidator(_refuse_literal)]
"""A spec field type for secrets: only ``{env: NAME}`` is accepted."""
