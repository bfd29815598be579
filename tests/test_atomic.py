"""Small files replaced whole: the folder is made on first use, and a failed replace leaves
the old file and no temporary one."""

import pytest

from headwater.atomic import replace_file


@pytest.mark.parametrize("fsync", [False, True])
def test_a_file_is_written_whole_and_replaced(tmp_path, fsync):
    path = tmp_path / "a" / "b" / "x.json"  # folders made on first use
    replace_file(path, b'{"n": 1}', fsync=fsync)
    replace_file(path, memoryview(b'{"n": 22}'), fsync=fsync)
    assert path.read_bytes() == b'{"n": 22}'
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "d"
    (target / "inside").mkdir(parents=True)  # a non-empty folder cannot be replaced by a file
    with pytest.raises(OSError):
        replace_file(target, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert (target / "inside").is_dir()
