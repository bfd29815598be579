"""CSV decoder: one CSV record per message, parsed for the whole batch by Arrow.

Records of a file source carry their file's header line; records from a topic use the
configured ``columns``. Rows Arrow cannot parse are quarantined with the reason.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from pydantic import Field, field_validator

from headwater.arrow import joined_lines, plain_lines
from headwater.batch import RawBatch
from headwater.decoders.base import Decoded, Decoder, DecoderConfig
from headwater.decoders.types import arrow_type, check_type_names
from headwater.quarantine import Refused


class CsvConfig(DecoderConfig):
    columns: list[str] = Field(
        default_factory=list,
        description="Column names when the messages carry no header line.",
    )
    types: dict[str, str] = Field(
        default_factory=dict, description="Column types to enforce; others are inferred."
    )
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    _types = field_validator("types")(classmethod(lambda cls, v: check_type_names(v)))


class CsvDecoder(Decoder):
    Config = CsvConfig

    def decode(self, raw: RawBatch) -> Decoded:
        whole = self._decode_whole(raw)
        if whole is not None:
            return whole
        sources = raw.messages["_source"].to_pylist()
        offsets = raw.messages["_offset"].to_pylist()
        values = raw.messages["value"].to_pylist()
        groups: dict[bytes | None, list[int]] = {}
        for i, source in enumerate(sources):
            groups.setdefault(raw.headers.get(source), []).append(i)
        tables, rows, refused = [], [], Refused()
        for header, members in groups.items():
            table, kept = self._parse(header, [values[i] for i in members], bad_sink := [])
            tables.append(table)
            rows.extend(members[k] for k in kept)
            for k, reason in bad_sink:
                i = members[k]
                refused.add(sources[i], offsets[i], reason, values[i])
        table = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})
        table = table.drop_columns([c for c in self.config.drop if c in table.column_names])
        return self.finish(table, np.asarray(rows, dtype=np.int64), raw, [refused.table()])

    def _decode_whole(self, raw: RawBatch) -> Decoded | None:
        """The usual batch — one header line for all its messages, none of them null, blank
        or ending in a line break — parsed in one go, with no Python per message (that
        grouping and joining cost as much as parsing a placement window); None for any other
        batch, or one Arrow refuses: :meth:`decode` then goes message by message."""
        messages = raw.messages
        try:
            values = messages["value"].combine_chunks()
        except pa.ArrowInvalid:  # more than 2 GiB of text: message by message, chunk by chunk
            return None
        if self.config.columns:
            header = None
        else:
            sources = pc.unique(messages["_source"]).to_pylist()
            headers = {raw.headers.get(s) for s in sources}
            if len(headers) != 1:
                return None
            header = headers.pop()
        if not plain_lines(values):
            return None
        body = _with_header(joined_lines(values), header)
        try:
            table = self._arrow_csv(body, use_threads=True)
        except pa.ArrowInvalid:
            return None
        if table.num_rows != len(values):  # a message held more than one line
            return None
        table = table.drop_columns([c for c in self.config.drop if c in table.column_names])
        return self.finish(table, None, raw, [])

    def _parse(
        self, header: bytes | None, lines: list[bytes | None], bad: list[tuple[int, str]]
    ) -> tuple[pa.Table, list[int]]:
        """Parse one header group; return the table and the kept indexes into ``lines``."""
        nonblank = [i for i, v in enumerate(lines) if v and v.strip()]
        bad.extend((i, "csv: empty record") for i, v in enumerate(lines) if not (v and v.strip()))
        if self.config.columns:
            header = None
        mark = len(bad)
        for read in (self._read_clean, functools.partial(self._read, bad=bad)):
            try:
                table, kept = read(nonblank, lines, header)
            except pa.ArrowInvalid:
                continue  # a ragged row or a value of the wrong type: find which, as below
            if table.num_rows == len(kept):
                return table, kept
            break  # a message holds more than one record: find which, as below
        # find the culprits message by message
        del bad[mark:]
        good = []
        for i in nonblank:
            try:
                one, _ = self._read([i], lines, header, bad)
            except pa.ArrowInvalid as exc:
                bad.append((i, f"csv: {exc}"))
                continue
            if one.num_rows > 1:
                bad.append((i, f"csv: {one.num_rows} records in one message; expected one"))
            else:
                good.append(i)
        return self._read(good, lines, header, [])

    def _read_clean(
        self, rows: list[int], lines: list[bytes | None], header: bytes | None
    ) -> tuple[pa.Table, list[int]]:
        """Parse ``lines[rows]`` when every row is good (else ArrowInvalid), with Arrow's
        threaded reader: its serial one, which numbers the rows a handler is told of, starts
        a thread of its own for every call, and on a busy machine that start costs 0.1 to
        3 ms, more than parsing a window of a few hundred rows (measured in a placement
        loop). The threaded reader works on threads that stay."""
        return self._arrow_csv(self._body(rows, lines, header), use_threads=True), rows

    def _arrow_csv(self, body: bytes, use_threads: bool) -> pa.Table:
        return pcsv.read_csv(
            pa.py_buffer(body),
            read_options=pcsv.ReadOptions(
                column_names=self.config.columns or None, use_threads=use_threads
            ),
            parse_options=pcsv.ParseOptions(delimiter=self.config.delimiter),
            convert_options=self._convert,
        )

    @property
    def _convert(self) -> pcsv.ConvertOptions:
        types = {k: arrow_type(v) for k, v in self.config.types.items()}
        return pcsv.ConvertOptions(column_types=types)

    @staticmethod
    def _body(rows: list[int], lines: list[bytes | None], header: bytes | None) -> bytes:
        body = b"\n".join(lines[i].rstrip(b"\r\n") for i in rows)  # type: ignore[union-attr]
        return _with_header(body, header)

    def _read(
        self,
        rows: list[int],
        lines: list[bytes | None],
        header: bytes | None,
        bad: list[tuple[int, str]],
    ) -> tuple[pa.Table, list[int]]:
        """Parse ``lines[rows]``; ragged rows are skipped into ``bad``. Returns kept rows."""
        skipped: set[int] = set()

        def on_invalid(row) -> str:
            # row.number is 1-based over the parsed text, header line included
            i = rows[row.number - (2 if header is not None else 1)]
            skipped.add(i)
            bad.append(
                (
                    i,
                    f"csv: expected {row.expected_columns} columns, "
                    f"got {row.actual_columns}: {row.text!r}",
                )
            )
            return "skip"

        table = pcsv.read_csv(
            pa.py_buffer(self._body(rows, lines, header)),
            # row numbers in invalid_row_handler need the serial reader
            read_options=pcsv.ReadOptions(
                column_names=self.config.columns or None, use_threads=False
            ),
            parse_options=pcsv.ParseOptions(
                delimiter=self.config.delimiter, invalid_row_handler=on_invalid
            ),
            convert_options=self._convert,
        )
        return table, [i for i in rows if i not in skipped]


def _with_header(body: bytes, header: bytes | None) -> bytes:
    return body if header is None else header.rstrip(b"\r\n") + b"\n" + body
