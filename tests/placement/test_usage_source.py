"""The usage source cuts a usage file into windows of ticks by byte range, so a growing file
is read from where its last batch ended, and each batch reads back exactly its records."""

from __future__ import annotations

import random
import shutil

from headwater.arrow import joined_lines, split_lines
from headwater.pipeline import Pipeline
from headwater.spec.load import load_spec
from tests.placement.test_pipeline import THESIS, project

ROWS = (THESIS / "container_usage.csv").read_text().splitlines()  # header, 10 rows a tick


def source_of(spec):
    return Pipeline(load_spec(spec, base_dir=spec.parents[1])).source


def usage_file(tmp_path, rows: list[str], end: str = "\n"):
    data = tmp_path / "src"
    data.mkdir(exist_ok=True)
    shutil.copy(THESIS / "node_meta.csv", data)
    (data / "container_usage.csv").write_text("\n".join(rows) + end)
    return data


def records(source, coordinates) -> list[str]:
    raw = source.read(coordinates)
    assert not raw.unreadable
    return [m.decode() for m in raw.messages["value"].to_pylist()]


def test_windows_carry_their_byte_range_and_read_back_exactly_their_records(tmp_path):
    spec = project(tmp_path, usage_file(tmp_path, ROWS), window=4)
    source = source_of(spec)
    planned = [c for c, _ in source.plan([])]
    assert [c["ticks"] for c in planned] == [[0, 4], [4, 8], [8, 12]]
    text = (tmp_path / "data" / "container_usage.csv").read_bytes()
    for k, c in enumerate(planned):
        lo, hi = c["bytes"]
        assert text[lo:hi].decode().splitlines() == ROWS[1 + 40 * k : 1 + 40 * (k + 1)]
        assert records(source, c) == ROWS[1 + 40 * k : 1 + 40 * (k + 1)]
    assert planned[-1]["bytes"][1] == len(text)


def test_a_growing_file_is_read_on_from_the_last_batch_end(tmp_path):
    spec = project(tmp_path, usage_file(tmp_path, ROWS[:41]), window=4)  # ticks 0..3
    source = source_of(spec)
    [(first, n)] = source.plan([])
    assert n == 40
    path = tmp_path / "data" / "container_usage.csv"
    done = path.read_bytes()
    # bytes already batched are never read again: scribbling over them changes nothing
    scribbled = done[: first["bytes"][0]] + b"#" * (len(done) - first["bytes"][0])
    path.write_bytes(scribbled + ("\n".join(ROWS[41:81]) + "\n").encode())
    [(second, n)] = source.plan([first])
    assert second["ticks"] == [4, 8] and second["lines"] == [40, 80] and n == 40
    assert second["bytes"] == [len(done), path.stat().st_size]
    assert records(source, second) == ROWS[41:81]


def test_a_last_line_without_its_newline_and_blank_lines_are_handled(tmp_path):
    rows = [*ROWS[:21], "", *ROWS[21:41]]  # a blank line inside tick 2
    spec = project(tmp_path, usage_file(tmp_path, rows, end=""), window=4)
    source = source_of(spec)
    [(coords, n)] = source.plan([])
    assert n == 40 and coords["lines"] == [0, 40]
    assert records(source, coords) == ROWS[1:41]


def test_a_batch_recorded_by_lines_only_still_reads_and_a_shrunk_file_says_so(tmp_path):
    spec = project(tmp_path, usage_file(tmp_path, ROWS), window=4)
    source = source_of(spec)
    file = str(tmp_path / "data" / "container_usage.csv")
    older = {"file": file, "lines": [40, 80], "ticks": [4, 8]}  # recorded before byte ranges
    assert records(source, older) == ROWS[41:81]
    [(next_one, _)] = [p for p in source.plan([older]) if p[0]["ticks"] == [8, 12]]
    assert records(source, next_one) == ROWS[81:121]
    (tmp_path / "data" / "container_usage.csv").write_text("\n".join(ROWS[:61]) + "\n")
    raw = source.read(next_one)
    [(_name, offset, error)] = raw.unreadable
    assert raw.messages.num_rows == 0 and offset == 80
    assert "shrank or was rewritten" in error


def _lines_one_by_one(data: bytes) -> tuple[list[bytes], list[list[int]]]:
    """What split_lines must give, line by line: non-blank lines without their trailing
    CRs, each with its byte range, newline included."""
    records, spans, at = [], [], 0
    for line in data.split(b"\n"):
        end = min(at + len(line) + 1, len(data))
        if line.strip(b"\r"):
            records.append(line.rstrip(b"\r"))
            spans.append([at, end])
        at = end
    return records, spans


def test_lines_are_split_over_the_bytes_as_they_would_be_one_by_one():
    rng = random.Random(5)
    cases = [b"", b"\n", b"a,b", b"a\r\n\r\n\nb\r\r\n\rc\n  \n", b"\r\r\n", b"x\ny\r"]
    cases += [bytes(rng.choice(b"ab,\r\n ") for _ in range(rng.randint(0, 40))) for _ in range(500)]
    for data in cases:
        records, spans = split_lines(data)
        expected, expected_spans = _lines_one_by_one(data)
        assert records.to_pylist() == expected, data
        assert spans.tolist() == expected_spans, data
        for k in range(len(expected) + 1):  # a plan joins the records past the last batch
            joined = joined_lines(records[k:])
            assert joined == (b"\n".join(expected[k:]) + b"\n" if expected[k:] else b""), data
