"""The example job's data: reading a labelled CSV (header, quoting, multi-line texts), choosing the
text and label columns, refusing data it cannot interpret, the train/held-out split, the fixed
evaluation slice and the ``max_length`` truncation check.

Standard library only, apart from scikit-learn for the splits, so that the reading rules can be
tested without torch.
"""

from __future__ import annotations

import csv
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from progress import log, warn

HERE = Path(__file__).resolve().parent

#: Header names that mark the text column, best first; then names that contain one of them.
TEXT_NAMES = ("text", "sentence", "utterance", "tweet", "query", "question", "message", "review",
              "content", "comment", "body", "document", "description", "phrase", "title")
#: Header names that mark the label column, best first; then ``*sentiment*`` / ``*label*``-like names.
LABEL_NAMES = ("label", "intent", "class", "category", "sentiment", "target", "labels", "tag", "topic", "y")
_LABEL_PARTS = ("sentiment", "label", "intent", "class", "category")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .\-]{0,39}$")


class DataError(Exception):
    """Data the job cannot interpret; the message names the file, the column and why."""


@dataclass
class Dataset:
    texts: list[str]
    labels: list[str]
    text_column: str  # how the column was found, for the log: "'text' (column 10)"
    label_column: str
    header: bool


# --------------------------------------------------------------------------- reading


def read_rows(path: str) -> list[tuple[int, list[str]]]:
    """Every non-blank record of ``path`` with the line it starts on (quoted fields may span lines)."""
    delimiter = "\t" if path.lower().endswith((".tsv", ".tab")) else ","
    rows: list[tuple[int, list[str]]] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=delimiter, skipinitialspace=True)
            line = 1
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append((line, row))
                line = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: not CSV the job can read: {exc}") from None
    if not rows:
        raise DataError(f"{path}: the file holds no rows")
    return rows


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _is_known_name(cell: str) -> bool:
    """A well-known column name: text, label, intent ..., or one word like ``airline_sentiment``."""
    name = _norm(cell)
    if name in TEXT_NAMES or name in LABEL_NAMES:
        return True
    one_word = len(cell.split()) == 1 and len(name) <= 40
    return one_word and ("sentiment" in name or "label" in name or name.endswith("_text"))


def has_header(rows: Sequence[tuple[int, list[str]]], named: Sequence[str], sample: str) -> bool:
    """Whether the first row names the columns.

    Yes when it holds a column the parameters name, or a well-known column name (text, label,
    intent, ``*sentiment*`` ...), or when csv.Sniffer's has_header thinks so, or when every cell of
    it is a short identifier while the second column below it is mostly multi-word text.
    """
    first = [cell.strip() for cell in rows[0][1]]
    if any(name in first for name in named) or any(_is_known_name(cell) for cell in first if cell):
        return True
    try:
        if csv.Sniffer().has_header(sample):
            return True
    except csv.Error:
        pass
    rest = [row for _, row in rows[1:200] if len(row) > 1]
    if len(first) < 2 or not rest or not all(_IDENTIFIER.match(cell) and " " not in cell for cell in first):
        return False
    wordy = sum(len(row[1].split()) >= 3 for row in rest)
    first_again = sum(row[0].strip() == first[0] for row in rest)
    return wordy > 0.5 * len(rest) and first_again == 0


def _pick(header: list[str], exact: Sequence[str], parts: Sequence[str], skip: int | None) -> int | None:
    names = [_norm(cell) for cell in header]
    for wanted in exact:
        for i, name in enumerate(names):
            if name == wanted and i != skip:
                return i
    for tier in (lambda n, p: n.endswith("_" + p), lambda n, p: p in n):
        for i, name in enumerate(names):
            if i != skip and any(tier(name, part) for part in parts):
                return i
    return None


def _resolve(spec: int | str, header: list[str] | None, width: int, role: str, path: str) -> int:
    columns = ", ".join(f"{i}: {name!r}" for i, name in enumerate(header)) if header else ""
    if isinstance(spec, int):
        if spec >= width:
            listing = f": {columns}" if header else f" (0 to {width - 1})"
            raise DataError(f"{path}: {role}_column {spec} is out of range: the file has {width} column(s){listing}")
        return spec
    if header is None:
        raise DataError(
            f"{path}: {role}_column {spec!r} names a column, but the file has no header row; "
            f"give a 0-based index (0 to {width - 1}) or add a header row"
        )
    for match in (lambda name: name.strip() == spec, lambda name: _norm(name) == _norm(spec)):
        found = [i for i, name in enumerate(header) if match(name)]
        if found:
            return found[0]
    raise DataError(f"{path}: no column {spec!r} for {role}_column; the columns are {columns}")


def choose_columns(
    header: list[str] | None, width: int, text_spec: int | str | None, label_spec: int | str | None, path: str
) -> tuple[int, int]:
    """(text index, label index): from the parameters, else by header names, else label,text."""
    label = None if label_spec is None else _resolve(label_spec, header, width, "label", path)
    text = None if text_spec is None else _resolve(text_spec, header, width, "text", path)
    if header is None:
        label = 0 if label is None else label
        text = (1 if label != 1 else 0) if text is None else text
    else:
        if label is None:
            label = _pick(header, LABEL_NAMES, _LABEL_PARTS, skip=text)
        if text is None:
            text = _pick(header, TEXT_NAMES, TEXT_NAMES, skip=label)
        if width == 2 and (text is None) != (label is None):
            text, label = (1 - label, label) if text is None else (text, 1 - text)  # type: ignore[operator]
        if text is None or label is None:
            role = "text" if text is None else "label"
            columns = ", ".join(f"{i}: {name!r}" for i, name in enumerate(header))
            raise DataError(
                f"{path}: cannot tell which column holds the {role}s; set {role}_column "
                f"(a name or a 0-based index); the columns are {columns}"
            )
    if width < 2 or text == label:
        raise DataError(f"{path}: the text and the label need two different columns (the file has {width})")
    return text, label


def _describe(index: int, header: list[str] | None) -> str:
    return f"{header[index]!r} (column {index})" if header else f"column {index}"


def read_labeled_csv(path: str, text_column: int | str | None = None, label_column: int | str | None = None) -> Dataset:
    """Read ``path`` with the csv module and check that what it calls labels are labels."""
    rows = read_rows(path)
    with open(path, encoding="utf-8-sig", newline="", errors="replace") as fh:
        sample = fh.read(65536)
    named = [spec for spec in (text_column, label_column) if isinstance(spec, str)]
    header = [cell.strip() for cell in rows[0][1]] if has_header(rows, named, sample) else None
    body = rows[1:] if header else rows
    if not body:
        raise DataError(f"{path}: the file holds a header row and no data")
    if header:
        width = len(header)
    elif text_column is None and label_column is None:
        width = 2  # no header, no columns named: "label, text", unquoted commas belong to the text
    else:
        width = Counter(len(row) for _, row in body).most_common(1)[0][0]
    text_i, label_i = choose_columns(header, width, text_column, label_column, path)
    texts, labels, lines = _extract(body, text_i, label_i, width, path)
    dataset = Dataset(texts, labels, _describe(text_i, header), _describe(label_i, header), header is not None)
    check_labels(dataset, lines, header, path)
    return dataset


def _extract(
    body: Sequence[tuple[int, list[str]]], text_i: int, label_i: int, width: int, path: str
) -> tuple[list[str], list[str], list[int]]:
    texts: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    skipped: list[int] = []
    joined = 0
    for line, row in body:
        if text_i == width - 1 and len(row) > width:
            # Unquoted commas in a last text column (the ATIS layout): they belong to the text.
            row = row[:text_i] + [", ".join(cell.strip() for cell in row[text_i:])]
            joined += 1
        text = row[text_i].strip() if text_i < len(row) else ""
        label = row[label_i].strip() if label_i < len(row) else ""
        if not text or not label:
            skipped.append(line)
            continue
        texts.append(text)
        labels.append(label)
        lines.append(line)
    if joined:
        log(f"{joined} row(s) have unquoted commas in the text (the last column): kept as part of the text")
    if skipped:
        where = ", ".join(map(str, skipped[:5])) + (" ..." if len(skipped) > 5 else "")
        if len(skipped) > len(body) / 2:
            raise DataError(
                f"{path}: {len(skipped)} of {len(body)} rows have an empty text or label (lines {where}): "
                "check text_column/label_column and the delimiter"
            )
        warn(f"skipped {len(skipped)} row(s) of {path} with an empty text or label (lines {where})")
    return texts, labels, lines


# --------------------------------------------------------------------------- checks


def check_labels(data: Dataset, lines: Sequence[int], header: list[str] | None, path: str) -> None:
    """Refuse a label column that holds a header row, text fragments or text."""
    column = f"label column {data.label_column}"
    names = {_norm(name) for name in header or ()} | set(LABEL_NAMES) | set(TEXT_NAMES)
    for line, label, text in zip(lines, data.labels, data.texts, strict=True):
        if _norm(label) in names and _IDENTIFIER.match(text) and (_is_known_name(text) or _norm(text) in names):
            raise DataError(
                f"{path}, line {line}: the {column} holds {label!r} next to the text {text!r}: that is a "
                "header row read as data. Remove the repeated header row (or merge the files without it)"
            )
    counts = Counter(data.labels)
    if len(counts) < 2:
        raise DataError(f"{path}: the {column} holds fewer than two labels ({', '.join(counts) or 'none'})")
    rows = len(data.labels)
    singles = [label for label, n in counts.items() if n == 1]
    words = sum(len(label.split()) for label in singles) / max(1, len(singles))
    chars = sum(len(label) for label in singles) / max(1, len(singles))
    fix = (
        "Check label_column (and text_column), and that texts holding commas or line breaks are quoted"
    )
    if rows >= 20 and len(counts) > rows / 2:
        raise DataError(
            f"{path}: the {column} does not hold labels: {len(counts)} distinct values in {rows} rows "
            f"(e.g. {_examples(singles or list(counts))}). {fix}"
        )
    if len(singles) > len(counts) / 2 and (words >= 2 or chars > 30):
        raise DataError(
            f"{path}: the {column} holds text, not labels: {len(singles)} of its {len(counts)} distinct "
            f"values occur once and they average {words:.1f} words (e.g. {_examples(singles)}): pieces "
            f"of texts read as labels. {fix}"
        )


def _examples(values: Sequence[str]) -> str:
    return ", ".join(repr(v if len(v) <= 40 else v[:37] + "...") for v in values[:3])


def label_counts_line(labels: Sequence[str], limit: int = 30) -> str:
    counts = Counter(labels).most_common()
    shown = ", ".join(f"{label} {n}" for label, n in counts[:limit])
    more = f", ... and {len(counts) - limit} more" if len(counts) > limit else ""
    return f"label counts ({len(counts)} labels): {shown}{more}"


def truncation_warning(lengths: Sequence[int], max_length: int, threshold: float = 0.10) -> str | None:
    """A warning when more than ``threshold`` of the texts are longer than ``max_length`` tokens."""
    if not lengths:
        return None
    cut = sum(n > max_length for n in lengths)
    share = cut / len(lengths)
    if share <= threshold:
        return None
    ordered = sorted(lengths)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return (
        f"max_length {max_length} cuts {cut} of {len(lengths)} texts ({share:.0%}) (longest {ordered[-1]} tokens); "
        f"95 % of them fit in {p95} tokens: set max_length: {p95}"
    )


# --------------------------------------------------------------------------- files and splits


def ensure_data(path: str, default: str) -> str:
    if os.path.exists(path):
        return path
    if os.path.normpath(path) != os.path.normpath(default):
        raise SystemExit(f"error: data file {path} not found")
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import make_data

    make_data.write_dataset(path)
    log(f"generated {path} with make_data.py ({make_data.DEFAULT_ROWS} rows, seed {make_data.DEFAULT_SEED})")
    return path


def split_indices(labels: Sequence[str], test_size: Any, seed: int) -> tuple[list[int], list[int], str]:
    """Stratified train/test split that tolerates labels with a single row.

    Labels with fewer than two rows cannot be stratified; their rows go to
    the training split so that the model at least sees them.  Should the
    stratified split still be impossible (for instance a test split smaller
    than the number of labels), a plain shuffled split is used.
    """
    from sklearn.model_selection import train_test_split

    counts = Counter(labels)
    rare = [i for i, lab in enumerate(labels) if counts[lab] < 2]
    common = [i for i, lab in enumerate(labels) if counts[lab] >= 2]
    if len(labels) < 2:
        raise SystemExit("error: need at least two rows of data")
    try:
        if len(common) < 2:
            raise ValueError("too few rows to stratify")
        train, test = train_test_split(
            common, test_size=test_size, random_state=seed, stratify=[labels[i] for i in common]
        )
        how = "stratified"
        if rare:
            how += f", {len(rare)} row(s) of {len({labels[i] for i in rare})} single-row label(s) kept in train"
        train = list(train) + rare
    except ValueError as exc:
        train, test = train_test_split(list(range(len(labels))), test_size=test_size, random_state=seed, shuffle=True)
        how = f"not stratified ({exc})"
    return list(train), list(test), how


def eval_slice_positions(labels: Sequence[Any], size: int, seed: int) -> list[int]:
    """Positions of a fixed, stratified ``size``-row slice of the held-out set (all when it is smaller)."""
    if size >= len(labels):
        return list(range(len(labels)))
    from sklearn.model_selection import train_test_split

    positions = list(range(len(labels)))
    try:
        chosen, _ = train_test_split(positions, train_size=size, random_state=seed, stratify=list(labels))
    except ValueError:  # a label with one held-out row, or more labels than slice rows
        chosen, _ = train_test_split(positions, train_size=size, random_state=seed, shuffle=True)
    return sorted(chosen)
