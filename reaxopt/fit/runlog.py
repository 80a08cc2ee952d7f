"""The fit's log: progress lines to a stream (stdout) and to ``run.log``, and on a terminal a
progress bar of the outer steps below them (never in ``run.log``)."""

from __future__ import annotations

import sys
from pathlib import Path

from reaxopt.io.files import write_text_atomic


class RunLog:
    """Progress lines to a stream (stdout) and, rewritten atomically, to ``run.log``; on a
    terminal, a progress bar of the fit's outer steps below the lines (never in ``run.log``)."""

    def __init__(self, path: Path | None, stream=None, previous: str = ""):
        self.path = path
        self.stream = sys.stdout if stream is None else stream
        self.lines: list[str] = [previous.rstrip("\n")] if previous.strip() else []
        self.bar = None

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self.bar is not None:
            self.bar.write(line, file=self.stream)  # clears the bar, writes, redraws it
        elif self.stream is not False:
            print(line, file=self.stream, flush=True)

    def start_bar(self, total_steps: int, done: int) -> None:
        """A bar over the run's outer steps (all trials), when the stream is a terminal."""
        isatty = getattr(self.stream, "isatty", None)
        if self.stream is False or isatty is None or not isatty() or total_steps <= 0:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total_steps, initial=min(done, total_steps), desc="fit",
                        unit="step", file=self.stream, dynamic_ncols=True, leave=True)

    def progress(self, done: int, status: str) -> None:
        """Move the bar to ``done`` outer steps, with ``status`` (trial, step, losses) beside."""
        if self.bar is not None:
            self.bar.n = min(done, self.bar.total)
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.refresh()

    def close_bar(self, done: int | None = None) -> None:
        if self.bar is not None:
            if done is not None:
                self.progress(done, self.bar.postfix or "")
            self.bar.close()
            self.bar = None

    def save(self) -> None:
        if self.path is not None:
            write_text_atomic(self.path, "\n".join(self.lines) + "\n")
