"""The one exception root of headwater and its few children.

Every message says what went wrong, where (file, key path, stream, batch), what was
expected, what was got, and how to fix it. Causes are chained with ``raise ... from``.
"""

from __future__ import annotations


class HeadwaterError(Exception):
    """Root of every error headwater raises on purpose.

    ``transient`` marks errors that may pass on their own (a broker or a disk that is
    briefly away): a run retries them; a permanent error (lost offsets, a bad query) fails
    at once, since retrying cannot help.
    """

    def __init__(self, *args: object, transient: bool = False):
        super().__init__(*args)
        self.transient = transient


class SpecError(HeadwaterError):
    """A pipeline spec is invalid. Raised at load, before any data is read.

    ``problems`` holds one line per problem: ``file:line: key.path: message``.
    """

    def __init__(self, file: str, problems: list[str]):
        self.file = file
        self.problems = problems
        header = f"invalid pipeline spec {file}: {len(problems)} problem(s)"
        super().__init__("\n".join([header, *(f"  {p}" for p in problems)]))


class ComponentNotFoundError(HeadwaterError):
    """A component name that no entry point or import path provides."""


class DecodeError(HeadwaterError):
    """One message could not be decoded. Caught per message and quarantined."""


class ProcessorError(HeadwaterError):
    """A processor failed on a whole batch (a bug in a query or a plugin, not bad input)."""


class SinkError(HeadwaterError):
    """A sink could not make a batch durable; the batch is not committed."""


class SourceError(HeadwaterError):
    """A source could not list or read its input."""
