"""``pectrack render-dashboard``: draw a dashboard's key panels to a PNG from Prometheus.

See :mod:`pipeline.dev.render` for what is drawn and how. Needs the ``render`` extra.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pipeline.dev.render import (
    DEFAULT_PANELS,
    RenderError,
    Window,
    panel_series,
    render,
    select_panels,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "render-dashboard",
        help="render a Grafana dashboard's key panels to a PNG from Prometheus data",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--dashboard", required=True, type=Path, help="dashboard JSON file")
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument(
        "--panel",
        action="append",
        dest="panels",
        metavar="TITLE",
        help="panel title to draw (repeatable; default: the overview's key panels)",
    )
    parser.add_argument("--range", type=float, default=600.0, help="seconds back from now")
    parser.add_argument("--step", type=float, default=2.0, help="seconds between points")
    parser.add_argument(
        "--rate-interval", default="1m", help="value of $__rate_interval (default: 1m)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        dashboard = json.loads(args.dashboard.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"pectrack render-dashboard: {args.dashboard}: {exc}", file=sys.stderr)
        return 2
    end = time.time()
    window = Window(end - args.range, end, args.step, args.rate_interval)
    try:
        chosen = select_panels(dashboard, args.panels or DEFAULT_PANELS)
        drawn = [(panel, panel_series(panel, args.prometheus, window)) for panel in chosen]
    except RenderError as exc:
        print(f"pectrack render-dashboard: {exc}", file=sys.stderr)
        return 1
    try:
        render(drawn, dashboard.get("title", args.dashboard.stem), end, args.out)
    except ImportError:
        print("pectrack render-dashboard: needs matplotlib: pip install 'pectrack[render]'",
              file=sys.stderr)  # fmt: skip
        return 2
    print(f"pectrack render-dashboard: wrote {args.out} ({len(drawn)} panels)")
    return 0
