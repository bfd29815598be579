"""Where librdkafka's own log lines go: Python logging, each distinct problem once a minute.

Left to itself, librdkafka writes every failed connection attempt to stderr, some twenty
lines a second while a cluster is down (``%3|...|FAIL|...|Connection refused``). Those lines
buried the one error headwater prints about it ("no broker answers ...; is the cluster up?",
from the clients' ``error_cb``) and filled a long-running worker's log for as long as an
outage lasted. Every client headwater makes passes its lines to the ``headwater.kafka.client``
logger instead (``logger`` in the client settings), whose filter lets a line through once and
then holds back the same line (numbers aside: ports, delays, client ids) for a minute, saying
how many it held back when it next lets one through.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

LOGGER_NAME = "headwater.kafka.client"
REPEAT_SECONDS = 60.0
_NUMBERS = re.compile(r"\d+")
_MOST_KEPT = 1000  # distinct lines remembered; a long outage cycles through only a few


class Repeats(logging.Filter):
    """Passes a record unless the same message (numbers aside) passed less than ``seconds``
    ago; the next one to pass says how many were held back meanwhile."""

    def __init__(
        self, seconds: float = REPEAT_SECONDS, clock: Callable[[], float] = time.monotonic
    ):
        super().__init__()
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()  # librdkafka's lines arrive on the clients' threads
        self._seen: dict[str, tuple[float, int]] = {}  # line → (last passed, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        key = _NUMBERS.sub("#", text)
        now = self.clock()
        with self._lock:
            last, held = self._seen.get(key, (None, 0))
            if last is not None and now - last < self.seconds:
                self._seen[key] = (last, held + 1)
                return False
            if len(self._seen) >= _MOST_KEPT:
                self._seen.clear()
            self._seen[key] = (now, 0)
        if held:
            record.msg, record.args = f"{text} ({held} more like it held back)", ()
        return True

    def held(self) -> int:
        """Lines held back since their last one passed."""
        with self._lock:
            return sum(n for _, n in self._seen.values())


def client_logger() -> logging.Logger:
    """The logger every Kafka client is given, with its repeat filter (added once)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(f, Repeats) for f in logger.filters):
        logger.addFilter(Repeats())
    return logger
