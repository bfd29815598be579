import pyarrow as pa
import pytest

from headwater import batch
from headwater.batch import binary_array, binary_views


def cells(views):
    return [None if v is None else bytes(v) for v in views]


VALUES = [b"alert-1", None, b"", b"\x00\x01binary", b"x" * 1000]


def test_binary_array_keeps_bytes_and_nulls():
    column = binary_array(VALUES)
    column.validate(full=True)
    assert column.type == pa.binary()
    assert column.to_pylist() == VALUES
    assert column.null_count == 1
    assert binary_array([]).to_pylist() == []


def test_binary_array_splits_before_32_bit_offsets_overflow(monkeypatch):
    monkeypatch.setattr(batch, "MAX_CHUNK_BYTES", 10)
    column = binary_array(VALUES)
    column.validate(full=True)
    assert column.to_pylist() == VALUES
    assert column.num_chunks > 1
    sizes = [(len(c), sum(len(v or b"") for v in c.to_pylist())) for c in column.chunks]
    assert all(size <= 10 or n == 1 for n, size in sizes)


@pytest.mark.parametrize(
    "column",
    [
        pa.array(VALUES, pa.binary()),
        pa.array(VALUES, pa.large_binary()),
        pa.chunked_array([pa.array(VALUES[:2], pa.binary()), pa.array(VALUES[2:], pa.binary())]),
    ],
    ids=["binary", "large_binary", "chunked"],
)
def test_binary_views_see_every_cell_without_copying(column):
    views = binary_views(column)
    assert cells(views) == VALUES
    data = (column.chunks[-1] if isinstance(column, pa.ChunkedArray) else column).buffers()[2]
    assert isinstance(views[-1].obj, pa.Buffer) and views[-1].obj.address == data.address


def test_binary_views_of_a_slice_start_where_the_slice_does():
    assert cells(binary_views(pa.array(VALUES, pa.binary()).slice(2, 2))) == VALUES[2:4]


def test_binary_views_refuse_other_types():
    with pytest.raises(TypeError, match="expected a binary column"):
        binary_views(pa.array(["text"]))
