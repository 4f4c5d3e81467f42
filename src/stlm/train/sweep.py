"""Sweeps: `stlm train -m train.lr=1e-3,3e-3 model=tiny-1m,tiny-3m` trains every point of the grid.

The overrides are expanded by Hydra's own multirun parser and sweeper (`BasicSweeper`: comma lists,
`range(...)`, `choice(...)`, `glob(...)`), so the syntax is Hydra's. Each point is an ordinary run
under one sweep folder:

    runs/<sweep-name>/
      sweep.json                         the swept keys and values, the fixed overrides, each point
      train.lr=0.001,model=tiny-1m/      a run directory (config.yaml, metrics.jsonl, summary.json, ...)
      ...

Every point's config is composed (and validated) before the first one trains. A point that fails
(e.g. diverges) is recorded in sweep.json and the sweep goes on. Running the same command with the
same `--sweep-name` again skips the points that finished. `stlm report runs/<sweep-name>` gathers
the points into one table and plots (`stlm.train.sweep_report`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from stlm.config.loader import ConfigError, compose_config
from stlm.errors import UserError
from stlm.runs import SUMMARY_FILE
from stlm.tokenizers.base import write_atomic

SWEEP_FILE = "sweep.json"


def expand(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]], list[list[str]]]:
    """(fixed overrides, swept key -> values, each point's overrides) by Hydra's multirun rules."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as e:  # noqa: BLE001  (Hydra's parse errors)
        raise ConfigError(f"bad sweep override: {e}") from e
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    swept = {o.key_or_group: list(o.sweep_string_iterator()) for o in parsed if o.is_sweep_override()}
    if not swept:
        raise UserError("-m (multirun) needs at least one swept override, e.g. train.lr=1e-3,3e-3")
    (points,) = BasicSweeper.split_arguments(parsed, None)
    swept_points = [[p for p in point if p.split("=", 1)[0].lstrip("+~") in swept] for point in points]
    return fixed, swept, swept_points


def point_name(point: list[str]) -> str:
    """A point's folder: its swept overrides as Hydra writes them (override_dirname)."""
    return ",".join(point).replace("/", "_")


def run_sweep(overrides: Sequence[str], name: str | None = None, echo: Callable[[str], None] = print) -> Path:
    """Train every point (see the module docstring); returns the sweep folder."""
    from stlm.train import run_training

    for o in overrides:
        if o.split("=", 1)[0].lstrip("+~") in ("run_name", "resume"):
            raise UserError(f"'{o}' cannot be used with -m: each point's run is named after its values "
                            f"(name the sweep with --sweep-name)")
    fixed, swept, points = expand(overrides)
    sweep_dir = Path(compose_config(fixed).runs_dir) / (name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    configs = []
    for point in points:
        cfg = compose_config([*fixed, *point])
        cfg.runs_dir, cfg.run_name = str(sweep_dir), point_name(point)
        configs.append((cfg.run_name, point, cfg))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"name": sweep_dir.name, "swept": swept, "fixed": fixed,
                              "points": [{"run": n, "overrides": p, "status": "pending"} for n, p, _ in configs]}
    _write(sweep_dir, record)
    echo(f"sweep {sweep_dir}: {len(configs)} points over {', '.join(swept)}")
    for entry, (run_name, _, cfg) in zip(record["points"], configs):
        if (sweep_dir / run_name / SUMMARY_FILE).is_file():
            entry["status"] = "done"
            echo(f"sweep: {run_name} already finished, skipped")
            continue
        echo(f"sweep: {run_name}")
        try:
            run_training(cfg, echo=echo)
            entry["status"] = "done"
        except UserError as e:  # a diverged or misconfigured point; the others still run
            entry["status"], entry["error"] = "failed", str(e)
            echo(f"sweep: {run_name} failed: {e}")
        _write(sweep_dir, record)
    return sweep_dir


def _write(sweep_dir: Path, record: dict[str, Any]) -> None:
    write_atomic(sweep_dir / SWEEP_FILE, (json.dumps(record, indent=1) + "\n").encode())


def read_sweep(sweep_dir: Path) -> dict[str, Any]:
    path = Path(sweep_dir) / SWEEP_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read ({e}); is {sweep_dir} a sweep folder from `stlm train -m`?") from e
