"""The error types of reaxopt's inputs: one problem (file, line or key, what was expected), and
a collector that reports every problem of the inputs at once."""

from __future__ import annotations

import contextlib

MAX_REPORTED = 25  # problems listed in one report; the rest are counted


class InputError(Exception):
    """Bad user input, reported as one paragraph and exit code 2 by the CLI.

    file: the path of the offending file (or None); line: 1-based line number;
    key: a config key such as ``optimizer.method``; message: what was wrong and what was expected.
    problems: for an error that reports several problems at once, each of them (else empty);
    the message lists the first MAX_REPORTED.
    """

    def __init__(self, message: str, *, file=None, line: int | None = None, key: str | None = None,
                 problems: tuple = ()):
        self.message = message
        self.file = None if file is None else str(file)
        self.line = line
        self.key = key
        self.problems = tuple(problems)
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
        text = f"{prefix}: {self.message}" if prefix else self.message
        return "\n".join([text] + ["  " + " ".join(str(p).split())
                                   for p in self.problems[:MAX_REPORTED]])


class Problems:
    """Collects ``InputError``s so that a reader reports every problem of its inputs together.

    ``with problems.collect(): ...`` records an InputError raised inside and goes on after the
    block; ``raise_if_any()`` raises the one problem as it is, or one InputError holding them
    all (its message lists the first ``MAX_REPORTED``).
    """

    def __init__(self) -> None:
        self.errors: list[InputError] = []

    def add(self, error: InputError) -> None:
        self.errors.extend(error.problems or (error,))

    @contextlib.contextmanager
    def collect(self):
        try:
            yield
        except InputError as error:
            self.add(error)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def __len__(self) -> int:
        return len(self.errors)

    def raise_if_any(self) -> None:
        unique: dict[str, InputError] = {}
        for error in self.errors:  # the same problem found twice counts once
            unique.setdefault(str(error), error)
        errors = list(unique.values())
        if not errors:
            return
        if len(errors) == 1:
            raise errors[0]
        more = (f" (the first {MAX_REPORTED} are listed)" if len(errors) > MAX_REPORTED
                else "")
        raise InputError(f"{len(errors)} problems in the inputs{more}:", problems=errors)


class InternalError(Exception):
    """An unexpected error inside a command that has already written its traceback to ``log``
    (a fit's run.log); ``message`` says what failed, in one line."""

    def __init__(self, message: str, log):
        self.message = message
        self.log = log
        super().__init__(message)
