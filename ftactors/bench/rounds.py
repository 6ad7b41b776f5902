"""The command line shared by the A/B benchmarks that measure systems against a plain Ray actor
in alternating rounds (``ftactors.bench.relay``, ``ftactors.bench.router_ab``): their arguments
(``--rounds``, ``--k``, ``--n``, ``--json``), the markdown table of their summary and the JSON dump.

Each module keeps its own ``measure(rounds, k, n)``, returning ``{"summary": {system: {...}}, ...}``
with at least the keys of :data:`BASE_COLUMNS` per system.
"""

from __future__ import annotations

import argparse
import importlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

#: a column of the table: (header, the cell of one system's summary row)
Column = Tuple[str, Callable[[Dict[str, Any]], str]]

#: the columns every A/B benchmark prints after the system's name
BASE_COLUMNS: Tuple[Column, ...] = (
    ("latency median ms", lambda r: f"{r['latency_median_ms']:.2f}"),
    ("x plain", lambda r: f"{r['latency_ratio']:.2f}"),
    ("calls/s", lambda r: f"{r['throughput_calls_s']:,.0f}"),
    ("x plain", lambda r: f"{r['throughput_ratio']:.2f}"),
)


@dataclass(frozen=True, slots=True)
class RoundsCli:
    """One A/B benchmark's command line.

    Args:
        module: the benchmark's module name; its ``measure`` is looked up by this name, so that
            run as ``python -m`` (as ``__main__``) its classes are still pickled by reference.
        description: the ``--help`` text.
        rounds: default ``--rounds``.
        k: default ``--k``, sequential calls per system per round.
        n: default ``--n``, pipelined calls per system per round.
        name_header: the header of the first column (the system's name).
        extra_columns: columns after :data:`BASE_COLUMNS`.
        footer: a line printed after the table, from the whole result (None: none).
        styles: the replicated styles the benchmark can measure: non-empty, a ``--styles`` option
            (comma-separated, all by default) passed to ``measure`` as ``styles``.
    """

    module: str
    description: str
    rounds: int
    k: int
    n: int
    name_header: str = "system"
    extra_columns: Tuple[Column, ...] = ()
    footer: Optional[Callable[[Dict[str, Any]], str]] = None
    styles: Tuple[str, ...] = ()

    def parse(self, argv: Optional[List[str]] = None) -> argparse.Namespace:
        """Parse the arguments.

        Args:
            argv: the arguments (None: ``sys.argv[1:]``).

        Returns:
            ``rounds``, ``k``, ``n``, ``json`` (a path or None) and, with :attr:`styles`, ``styles``
            (a tuple of them, in :attr:`styles`' order).

        Raises:
            SystemExit: ``--help`` or a bad argument (argparse), an unknown or empty ``--styles``.
        """
        ap = argparse.ArgumentParser(prog=f"python -m {self.module}", description=self.description)
        ap.add_argument("--rounds", type=int, default=self.rounds)
        ap.add_argument("--k", type=int, default=self.k, help="sequential calls per system per round")
        ap.add_argument("--n", type=int, default=self.n, help="pipelined calls per system per round")
        ap.add_argument("--json", metavar="PATH")
        if self.styles:
            ap.add_argument("--styles", default=",".join(self.styles),
                            help=f"the replicated styles to measure, comma-separated (default {','.join(self.styles)})")
        a = ap.parse_args(argv)
        if self.styles:
            given = [x.strip() for x in a.styles.split(",") if x.strip()]
            unknown = [x for x in given if x not in self.styles]
            if unknown or not given:
                ap.error(f"--styles: {unknown[0] if unknown else 'none'} is not one of {', '.join(self.styles)}")
            a.styles = tuple(x for x in self.styles if x in given)
        return a

    def table(self, result: Dict[str, Any]) -> List[str]:
        """The markdown table of ``result["summary"]``, one row per system, then the footer.

        Args:
            result: what the module's ``measure`` returned.

        Returns:
            The lines to print.
        """
        columns = BASE_COLUMNS + self.extra_columns
        lines = markdown_rows([self.name_header] + [h for h, _ in columns],
                              [[name] + [cell(row) for _, cell in columns] for name, row in result["summary"].items()])
        if self.footer is not None:
            lines.append(self.footer(result))
        return lines

    def main(self, argv: Optional[List[str]] = None) -> int:
        """Parse, measure, print the table and write the JSON if asked.

        Args:
            argv: the arguments (None: ``sys.argv[1:]``).

        Returns:
            0.
        """
        a = self.parse(argv)
        measure = importlib.import_module(self.module).measure
        result = measure(a.rounds, a.k, a.n, styles=a.styles) if self.styles else measure(a.rounds, a.k, a.n)
        for line in self.table(result):
            print(line)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(result, f, indent=1)
        return 0


def markdown_rows(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    """A markdown table: the header line, the separator, one line per row.

    Args:
        headers: the column headers.
        rows: the cells of each row, as many as headers.

    Returns:
        The lines.

    Raises:
        ValueError: a row with another number of cells than headers.
    """
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"a row of {len(row)} cells under {len(headers)} headers: {list(row)!r}")
    return (["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
            + ["| " + " | ".join(row) + " |" for row in rows])
