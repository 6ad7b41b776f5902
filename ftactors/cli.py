"""The ``ftactors`` command: ``demo``, ``chaos``, ``status``, ``bench``.

Bad input (a missing module, a class that is not replicated, a bad YAML field,
an unreachable ``--address``) answers with one line on stderr and exit status
2; ``--debug`` shows the traceback. A failed check exits with status 1.
"""

from __future__ import annotations

import logging
import shlex
import sys
import types
import traceback
from pathlib import Path
from typing import Any, List, Optional, Tuple, Type, Union

import click
import typer

try:  # typer >= 0.24 vendors click as typer._click
    from typer._click import exceptions as _typer_click

    _tc: types.ModuleType = _typer_click
except ImportError:  # pragma: no cover - older typer uses click itself
    _tc = click.exceptions

_USAGE_ERRORS: Tuple[Type[Exception], ...] = tuple({click.UsageError, _tc.UsageError})
_CLICK_ERRORS: Tuple[Type[Exception], ...] = tuple({click.ClickException, _tc.ClickException})
_EXITS: Tuple[Type[BaseException], ...] = tuple({click.exceptions.Exit, typer.Exit})
_ABORTS: Tuple[Type[BaseException], ...] = tuple({click.exceptions.Abort, typer.Abort})

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
    help="ftactors: Ray actors that survive failures with their state intact.",
)

DEFAULT_FAULTS = "kill-primary,kill-backup,kill-router,pause-primary"


class CliError(Exception):
    """Bad input: printed as one line, exit status 2."""


def _console() -> Any:
    from rich.console import Console

    return Console()


# ---------------------------------------------------------------------- demo


@app.command()
def demo(
    duration_s: float = typer.Option(20.0, "--duration-s", help="how long clients run (seconds)"),
    kill_every_s: float = typer.Option(4.0, "--kill-every-s", help="kill the primary about this often (seconds)"),
    seed: int = typer.Option(0, "--seed", help="seeds the kill times and the transfers"),
    style: str = typer.Option("semi-active", "--style", help="semi-active or passive"),
    replicas: int = typer.Option(3, "--replicas", help="replicas of the bank (>= 2)"),
    clients: int = typer.Option(4, "--clients", help="concurrent client threads"),
    address: Optional[str] = typer.Option(None, "--address", help="join this Ray cluster (default: a local Ray)"),
    nodes: Optional[int] = typer.Option(None, "--nodes", help="start N Ray nodes on this machine"),
    out: Path = typer.Option(Path("out/demo"), "--out", help="directory for result.json and latency.png"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
    debug: bool = typer.Option(False, "--debug", help="tracebacks and Ray logs"),
) -> int:
    """A replicated bank whose primary is killed every few seconds; checks nothing is lost or doubled."""
    from ftactors.chaos import start_ray, stop_ray
    from ftactors.demo import run_demo

    if style not in ("semi-active", "passive"):
        raise CliError(f"--style must be semi-active or passive, got {style!r}")
    if replicas < 2:
        raise CliError(f"--replicas must be >= 2, got {replicas}")
    if duration_s <= 0 or kill_every_s <= 0 or clients < 1:
        raise CliError("--duration-s and --kill-every-s must be > 0, --clients >= 1")
    console = _console()
    cluster = start_ray(address, nodes, debug)
    try:
        result, paths = run_demo(style=style, replicas=replicas, clients=clients, duration_s=duration_s,
                                 kill_every_s=kill_every_s, seed=seed, cluster=cluster, out=str(out),
                                 progress=not no_progress, console=console)
    finally:
        stop_ray(cluster)
    console.print(f"wrote {paths['json']} and {paths['png']}")
    if result.ok:
        console.print("[bold green]demo passed[/]: every acknowledged transfer applied exactly once, money conserved")
        return 0
    console.print(f"[bold red]demo FAILED[/] ({len(result.violations)} violations); replay: "
                  f"ftactors demo --seed {seed} --duration-s {duration_s:g} --kill-every-s {kill_every_s:g} "
                  f"--style {style} --replicas {replicas}")
    return 1


# --------------------------------------------------------------------- chaos


def _load_chaos_config(path: Path) -> Any:
    from pydantic import ValidationError

    from ftactors.chaos import ChaosConfig
    from ftactors.core.errors import ConfigError
    from ftactors.runtime.settings import first_error, read_yaml_section

    try:
        data = read_yaml_section(path, "chaos")
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    try:
        return ChaosConfig(**data)
    except ValidationError as exc:
        loc, msg = first_error(exc, "chaos")
        raise CliError(f"{path}: invalid field {loc!r}: {msg}") from None


@app.command()
def chaos(
    module: Optional[Path] = typer.Argument(None, help="a Python file defining CHAOS = ftactors.chaos.Campaign(...)"),
    config: Optional[Path] = typer.Option(None, "--config", help="a campaign YAML (configs/chaos.yaml); options win"),
    faults: Optional[str] = typer.Option(None, "--faults", help=f"comma-separated mix [default: {DEFAULT_FAULTS}]; "
                                         "also remove-node (with --nodes)"),
    fault_every_s: Optional[float] = typer.Option(None, "--fault-every-s", help="mean seconds between faults [4]"),
    duration_s: Optional[float] = typer.Option(None, "--duration-s", help="seconds of load [30 unless --faults-max]"),
    faults_max: Optional[int] = typer.Option(None, "--faults-max", help="stop after this many faults"),
    seed: Optional[int] = typer.Option(None, "--seed", help="the fault plan and workload seed [0]"),
    pause_s: Optional[float] = typer.Option(None, "--pause-s", help="pause-primary: SIGCONT after this long [3]"),
    clients: Optional[int] = typer.Option(None, "--clients", help="client threads (default: the campaign's)"),
    address: Optional[str] = typer.Option(None, "--address", help="join this Ray cluster (default: a local Ray)"),
    nodes: Optional[int] = typer.Option(None, "--nodes", help="start N Ray nodes on this machine"),
    out: Optional[Path] = typer.Option(None, "--out", help="directory for result.json and latency.png [out/chaos]"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
    debug: bool = typer.Option(False, "--debug", help="tracebacks and Ray logs"),
) -> int:
    """A chaos campaign against your own replicated actor (see ftactors.chaos for the module contract).

    The module defines CHAOS = ftactors.chaos.Campaign(target=<@ftactors.replicated class>,
    workload=workload(handle, rng, op_index), check=check(handle, history) -> [violations], args=(...)).
    """
    from pydantic import ValidationError

    from ftactors.chaos import (ChaosConfig, faults_table, load_campaign, parse_faults, plan_faults,
                                render_report, run, start_ray, stop_ray, write_outputs)

    cfg = _load_chaos_config(config) if config is not None else ChaosConfig()
    cli = dict(module=str(module) if module else None, faults=faults, fault_every_s=fault_every_s,
               duration_s=duration_s, faults_max=faults_max, seed=seed, pause_s=pause_s, clients=clients,
               address=address, nodes=nodes, out=str(out) if out else None)
    merged = cfg.model_dump()
    merged.update({k: v for k, v in cli.items() if v is not None})
    try:
        cfg = ChaosConfig(**merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise CliError(f"invalid option {'.'.join(map(str, err['loc']))!r}: {err['msg']}") from None
    if not cfg.module:
        raise CliError("give the module: ftactors chaos path/to/module.py (or module: in --config)")
    kinds = parse_faults(cfg.faults if isinstance(cfg.faults, str) else list(cfg.faults))
    if "remove-node" in kinds and cfg.nodes is None:
        raise CliError("fault remove-node needs --nodes N (a local multi-node cluster)")
    if cfg.duration_s is None and cfg.faults_max is None:
        cfg.duration_s = 30.0
    plan = plan_faults(cfg.seed, kinds, cfg.fault_every_s, cfg.duration_s, cfg.faults_max, cfg.pause_s)
    campaign = load_campaign(cfg.module)
    if cfg.clients is not None:
        campaign.clients = cfg.clients
    console = _console()
    console.print(f"[bold]ftactors chaos[/]: {campaign.name} from {cfg.module}, {len(plan)} faults "
                  f"({', '.join(kinds)}) about every {cfg.fault_every_s:g}s, seed {cfg.seed}")
    cluster = start_ray(cfg.address, cfg.nodes, debug)
    try:
        result = run(campaign, seed=cfg.seed, plan=plan, duration_s=cfg.duration_s, cluster=cluster,
                     progress=not no_progress, recover_timeout_s=cfg.recover_timeout_s)
    finally:
        stop_ray(cluster)
    faults_table(result, console)
    render_report(result, console)
    paths = write_outputs(result, cfg.out)
    console.print(f"wrote {paths['json']} and {paths['png']}")
    if result.ok:
        console.print(f"[bold green]campaign passed[/]: no violations (seed {cfg.seed})")
        return 0
    replay = ["ftactors", "chaos", cfg.module, "--seed", str(cfg.seed), "--faults", ",".join(kinds),
              "--fault-every-s", f"{cfg.fault_every_s:g}", "--pause-s", f"{cfg.pause_s:g}"]
    if cfg.duration_s is not None:
        replay += ["--duration-s", f"{cfg.duration_s:g}"]
    if cfg.faults_max is not None:
        replay += ["--faults-max", str(cfg.faults_max)]
    if cfg.nodes is not None:
        replay += ["--nodes", str(cfg.nodes)]
    if cfg.clients is not None:
        replay += ["--clients", str(cfg.clients)]
    console.print(f"[bold red]campaign FAILED[/]: {len(result.violations)} violations, seed {cfg.seed}")
    console.print(f"replay: {shlex.join(replay)}", soft_wrap=True)
    return 1


# -------------------------------------------------------------------- status


@app.command()
def status(
    address: str = typer.Option("auto", "--address", help="the Ray cluster (host:port, ray://host:10001, auto)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    debug: bool = typer.Option(False, "--debug", help="tracebacks and Ray logs"),
) -> int:
    """List the replicated groups in a running Ray cluster: view, primary, backups, lag, failovers."""
    import json

    import ray

    from ftactors.chaos import CampaignError, check_address
    from ftactors.status import collect, render

    joined = not ray.is_initialized()  # inside a driver (tests, notebooks): use its session
    if joined:
        check_address(address)
        try:
            ray.init(address=address, logging_level=logging.INFO if debug else logging.ERROR, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "Could not find any running Ray instance" in first:
                first = "no running Ray cluster found (start one with `ray start --head`, or pass --address)"
            raise CampaignError(f"cannot connect to Ray at {address}: {first}") from None
    try:
        rows = collect()
    finally:
        if joined:
            ray.shutdown()
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        render(rows, _console())
    return 0


# --------------------------------------------------------------------- bench


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="a short run (minutes, not tens of minutes)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the figures as JSON here"),
    out: Optional[Path] = typer.Option(None, "--out", help="directory for plots and tables"),
    debug: bool = typer.Option(False, "--debug", help="tracebacks"),
) -> int:
    """The benchmark suite (ftactors.bench); options are forwarded to it."""
    import importlib

    try:
        module = importlib.import_module("ftactors.bench")
    except ModuleNotFoundError as exc:
        if exc.name in ("ftactors.bench",):
            raise CliError("the benchmark suite (ftactors.bench) is not installed in this checkout") from None
        raise CliError(f"ftactors.bench cannot be imported: missing module {exc.name!r}") from None
    entry = getattr(module, "main", None)
    if not callable(entry):
        raise CliError("ftactors.bench has no main(argv) entry point")
    argv: List[str] = []
    if quick:
        argv.append("--quick")
    if json_path is not None:
        argv += ["--json", str(json_path)]
    if out is not None:
        argv += ["--out", str(out)]
    argv += list(ctx.args)
    rv = entry(argv)
    return int(rv) if isinstance(rv, int) else 0


# ---------------------------------------------------------------------- main


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point; returns the exit status."""
    from ftactors.chaos import CampaignError
    from ftactors.core.errors import ConfigError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    command = typer.main.get_command(app)
    try:
        rv: Union[int, None] = command.main(args=args, prog_name="ftactors", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except _EXITS as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except _ABORTS:
        print("ftactors: aborted", file=sys.stderr)
        return 130
    except _USAGE_ERRORS as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `ftactors` alone: the help was asked for
            print(exc.format_message() if hasattr(exc, "format_message") else str(exc))
            return 0
        if debug:
            traceback.print_exc()
        msg = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"ftactors: error: {' '.join(msg.split())}", file=sys.stderr)
        return 2
    except _CLICK_ERRORS as exc:
        if debug:
            traceback.print_exc()
        print(f"ftactors: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (CliError, CampaignError, ConfigError) as exc:
        if debug:
            traceback.print_exc()
        print(f"ftactors: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ftactors: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
