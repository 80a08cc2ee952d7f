"""The one error type for bad input: it names the file, the line or key, and what was expected."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input, reported as one paragraph and exit code 2 by the CLI.

    file: the path of the offending file (or None); line: 1-based line number;
    key: a config key such as ``optimizer.method``; message: what was wrong and what was expected.
    """

    def __init__(self, message: str, *, file=None, line: int | None = None, key: str | None = None):
        self.message = message
        self.file = None if file is None else str(file)
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.key is not None:
            where.append(f"key '{self.key}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message
