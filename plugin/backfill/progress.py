"""The backfill's progress bar on stderr: records done, rate and ETA; silent when stderr is not a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Records per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-/s" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


@contextmanager
def progress_bar(total: Callable[[], int], enabled: bool) -> Iterator[Callable[[int], None]]:
    """An `advance(n)` callable; `total` is only called (it reads the inputs) when the bar is shown."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda n: None
        return
    columns = (TextColumn("backfill"), BarColumn(), MofNCompleteColumn(), TextColumn("records"), RateColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("backfill", total=total())
        yield lambda n: bar.advance(task, n)
