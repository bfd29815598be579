"""Arrow helpers over the bytes of binary arrays, checked against Python line by line."""

import random

import pyarrow as pa

from headwater.arrow import plain_lines


def _plain_one_by_one(values: list[bytes | None]) -> bool:
    return bool(values) and all(
        v is not None and v.strip() and not v.endswith((b"\r", b"\n")) for v in values
    )


def test_plain_lines_says_what_a_python_check_of_each_record_says():
    rng = random.Random(7)
    cases = [[], [b""], [b" \t"], [b"a,b"], [b"a,b\r"], [b"a\n"], [b"a", None], [b"\x0ba"]]
    for _ in range(500):
        n = rng.randint(1, 6)
        cases.append(
            [bytes(rng.choice(b"ab, \t\r\n") for _ in range(rng.randint(0, 5))) for _ in range(n)]
        )
    for values in cases:
        array = pa.array(values, pa.binary())
        assert plain_lines(array) == _plain_one_by_one(values), values
        for k in range(1, len(values)):  # a slice starts inside the buffers
            assert plain_lines(array[k:]) == _plain_one_by_one(values[k:]), (values, k)
