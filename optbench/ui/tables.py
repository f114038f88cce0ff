"""The rule every table the CLI prints follows (`WholeTables`, a render hook on its consoles):
never a number cut to fit a width. Only rich: the CLI imports it at start-up."""

from __future__ import annotations

import copy

from rich.console import Console, ConsoleRenderable, RenderHook
from rich.measure import Measurement
from rich.table import Column, Table


def table_widths(table: Table, console: Console) -> Measurement:
    """The table's narrowest (every cell wrapped at its spaces) and natural (every cell on one
    line) widths, borders and padding included."""
    return Measurement.get(console, console.options.update_width(1_000_000), table)


def column_widths(column: Column, console: Console) -> Measurement:
    """The narrowest a column's cells get without cutting a word, and their natural width
    (padding not included)."""
    if column.width is not None:
        return Measurement(column.width, column.width)
    options = console.options.update_width(1_000_000)
    cells = [Measurement.get(console, options, cell) for cell in (column.header, *column.cells)]
    narrowest = max(cell.minimum for cell in cells)
    natural = max(cell.maximum for cell in cells)
    return Measurement(narrowest, natural).clamp(column.min_width, column.max_width)


def with_columns(table: Table, kept: list[int], widths: list[int]) -> Table:
    """A copy of `table` with only the columns at the `kept` positions, at fixed `widths`."""
    narrower = copy.copy(table)
    narrower.columns = []
    for index, width in zip(kept, widths, strict=True):
        column = copy.copy(table.columns[index])
        column.width = width
        column._index = len(narrower.columns)  # rich's own position field
        narrower.columns.append(column)
    return narrower


def fit_table(table: Table, console: Console) -> Table:
    """The table as `console` should print it, with no number cut to fit a width.

    Off a terminal (a pipe, a log, CI) there is no width to fit: the whole table at its natural
    width. On a terminal narrower than that, cells wrap at their spaces, the widest first; when
    even every column at its narrowest does not fit, columns are dropped by priority, the
    rightmost first, sparing the first (the rank or label) and the last (the status): the
    tables put what matters most on the left."""
    natural = table_widths(table, console).maximum
    if not console.is_terminal or natural <= console.width:
        whole = copy.copy(table)
        whole.width = natural
        return whole
    sizes = [column_widths(column, console) for column in table.columns]
    frame = natural - sum(size.maximum for size in sizes)  # borders and padding
    kept = list(range(len(table.columns)))
    droppable = kept[-2:0:-1]
    while frame + sum(sizes[i].minimum for i in kept) > console.width and droppable:
        kept.remove(droppable.pop(0))
        widths = [sizes[i].maximum for i in kept]
        frame = table_widths(with_columns(table, kept, widths), console).maximum - sum(widths)
    widths = [sizes[i].maximum for i in kept]
    excess = frame + sum(widths) - console.width
    while excess > 0:  # narrow the widest column that can still wrap, one cell at a time
        shrinkable = [j for j, i in enumerate(kept) if widths[j] > sizes[i].minimum]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda j: widths[j])
        widths[widest] -= 1
        excess -= 1
    return with_columns(table, kept, widths)


class WholeTables(RenderHook):
    """A console's render hook that prints every table it is given through `fit_table`."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def process_renderables(self, renderables: list[ConsoleRenderable]) -> list[ConsoleRenderable]:
        return [
            fit_table(item, self.console) if isinstance(item, Table) else item
            for item in renderables
        ]
