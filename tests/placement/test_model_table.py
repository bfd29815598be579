"""The placement processor reads a cluster_model table into arrays: distinct ids are coded
as numpy's unique would code them."""

import random

import numpy as np
import pyarrow as pa

from headwater.processors.placement import _codes


def test_ids_are_coded_as_numpy_unique_codes_them():
    rng = random.Random(3)
    for _ in range(50):
        ids = [
            rng.choice(["h1", "h10", "h2", "b", "é", "a b", ""]) for _ in range(rng.randint(1, 40))
        ]
        cut = rng.randint(0, len(ids))
        column = pa.chunked_array([ids[:cut], ids[cut:]], pa.string())
        values, codes = _codes(column)
        expected_values, expected_codes = np.unique(np.array(ids, dtype=str), return_inverse=True)
        assert values.tolist() == expected_values.tolist()
        assert codes.tolist() == expected_codes.tolist()
