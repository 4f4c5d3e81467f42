"""Where evaluation examples come from: local jsonl/csv files, or the Hugging Face hub.

Every example is a `Record` that remembers its file and line (or hub id and row), so bad input
is reported as "file, line N: field 'x' ...", never as a KeyError deep inside scoring. Local files
follow docs/data.md; the data folder is `--data-dir`, $STLM_DATA_DIR or the user cache folder
(`stlm.datadir`). Hub downloads go through `datasets`; an unreachable hub fails within seconds
with a message that says how to point at local files instead.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stlm.data.sources import check_hub_reachable, hub_offline
from stlm.datadir import DATA_DIR_ENV, LAYOUT_DOC, data_dir  # noqa: F401  (data_dir: re-exported)
from stlm.errors import UserError

HUB_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Record:
    """One example as read, with where it came from (`line` is 1-based; a hub row counts from 1)."""

    source: str
    line: int
    data: dict[str, Any]
    subtask: str | None = None  # paradigm / subject, when a task is a family of files or configs
    unit: str = "line"

    def where(self) -> str:
        return f"{self.source}, {self.unit} {self.line}"

    def fail(self, name: str, problem: str) -> UserError:
        return UserError(f"{self.where()}: field '{name}' {problem}")

    def get(self, name: str) -> Any:
        """The value at `name`; a dotted name (`choices.text`) reads inside nested objects."""
        value: Any = self.data
        for part in name.split("."):
            if not isinstance(value, dict) or part not in value:
                raise self.fail(name, f"is missing (fields: {', '.join(sorted(self.data))})")
            value = value[part]
        return value

    def text(self, name: str, allow_empty: bool = False) -> str:
        value = self.get(name)
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            raise self.fail(name, f"must be a non-empty string, got {value!r}")
        return value

    def texts(self, name: str, min_len: int = 2) -> list[str]:
        value = self.get(name)
        if (not isinstance(value, list) or len(value) < min_len
                or not all(isinstance(v, str) and v.strip() for v in value)):
            raise self.fail(name, f"must be a list of at least {min_len} non-empty strings, got {value!r}")
        return value

    def index(self, name: str, n_choices: int, labels: list[str] | None = None) -> int:
        """A gold answer as a 0-based choice index: an int, a digit string, or one of `labels`."""
        value = self.get(name)
        if labels is not None:  # labels map every gold value, ints too: labels [1, 2, 3] make 1 -> 0
            key = value if isinstance(value, str) else str(value) if isinstance(value, int) else None
            if key in labels:
                return labels.index(key)
            raise self.fail(name, f"= {value!r} is not one of the labels {labels}")
        if isinstance(value, str) and value.strip().isdigit() and labels is None:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            expected = f"one of {labels}" if labels is not None else "an integer choice index"
            raise self.fail(name, f"= {value!r} is not {expected}")
        if not 0 <= value < n_choices:
            raise self.fail(name, f"= {value} is out of range for {n_choices} choices (0..{n_choices - 1})")
        return value


def local_file(root: Path, relative: str, task: str) -> Path:
    path = root / relative
    if not path.exists():
        raise UserError(f"{task}: expected {path} in the data directory {root} (layout: "
                        f"{LAYOUT_DOC}); place the file there or choose another folder with --data-dir "
                        f"or ${DATA_DIR_ENV}")
    return path


def read_jsonl(path: Path, subtask: str | None = None) -> list[Record]:
    records = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            line = _utf8(raw, path, n)
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}, line {n}: not valid JSON ({e.msg})") from e
            if not isinstance(data, dict):
                raise UserError(f"{path}, line {n}: expected a JSON object, got {type(data).__name__}")
            records.append(Record(str(path), n, data, subtask))
    return _non_empty(records, path)


def _utf8(raw: bytes, path: Path, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}, line {line}: not UTF-8 text (a binary file, or another encoding); "
                        f"convert it to UTF-8") from None


def read_csv(path: Path, subtask: str | None = None) -> list[Record]:
    """A csv file with a header row; `line` is where each row starts in the file."""
    records = []
    with open(path, "rb") as f:
        lines = [_utf8(raw, path, n) for n, raw in enumerate(f, 1)]
    with io.StringIO("".join(lines), newline="") as f:
        reader = csv.DictReader(f)
        start = 2
        for row in reader:
            if None in row:
                raise UserError(f"{path}, line {start}: more values than the header's columns "
                                f"({', '.join(reader.fieldnames or [])})")
            missing = [k for k, v in row.items() if v is None]
            if missing:
                raise UserError(f"{path}, line {start}: field '{missing[0]}' is missing (row too short)")
            records.append(Record(str(path), start, dict(row), subtask))
            start = reader.line_num + 1
    return _non_empty(records, path)


def read_table(path: Path, subtask: str | None = None) -> list[Record]:
    if path.suffix == ".csv":
        return read_csv(path, subtask)
    if path.suffix in (".jsonl", ".json"):
        return read_jsonl(path, subtask)
    raise UserError(f"{path}: unsupported file type '{path.suffix}' (use .jsonl or .csv)")


def _non_empty(records: list[Record], path: Path) -> list[Record]:
    if not records:
        raise UserError(f"{path} holds no examples (the file is empty)")
    return records


def hub_records(path: str, name: str | None, split: str, subtask: str | None = None) -> list[Record]:
    """Rows of a hub dataset split via `datasets`; fails fast when the hub cannot be reached."""
    label = f"{path}{'/' + name if name else ''} [{split}]"
    if not hub_offline():
        check_hub_reachable(HUB_TIMEOUT_S, label, f"evaluate from local files with --data-dir DIR (or "
                            f"${DATA_DIR_ENV}) laid out as {LAYOUT_DOC}")
    try:
        import datasets

        rows = datasets.load_dataset(path, name, split=split)
    except Exception as e:  # noqa: BLE001  (datasets raises many kinds; all mean "cannot load")
        raise UserError(f"could not load {label} from the Hugging Face hub ({type(e).__name__}: {e}); "
                        f"pass --data-dir with local files or set ${DATA_DIR_ENV}") from e
    records = [Record(f"hub:{label}", i + 1, dict(row), subtask, "row")
               for i, row in enumerate(rows)]
    if not records:
        raise UserError(f"hub:{label} holds no examples")
    return records
