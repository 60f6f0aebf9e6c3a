"""``edgebook k8s render``: the Kubernetes manifests of the chart (``deploy/chart/edgebook``)
for given values, rendered without Helm (edgebook/k8s/render.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from ..k8s.render import DEFAULT_NAMESPACE, DEFAULT_RELEASE, RenderError, render, to_stream, write
from .common import CliError


def add_parsers(sub: Any) -> dict[str, Callable]:
    """Register the subcommand; returns ``{command: handler}`` for the CLI's table."""
    k8s = sub.add_parser("k8s", help="Kubernetes manifests (docs/kubernetes.md)")
    k8s_sub = k8s.add_subparsers(dest="k8s_command", required=True, metavar="ACTION")
    render_parser = k8s_sub.add_parser(
        "render", help="render the Helm chart's manifests without Helm")
    render_parser.add_argument("-f", "--values", action="append", default=[], metavar="FILE",
                               help="a values file merged over the chart's (repeatable)")
    render_parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                               help="set a value, e.g. gateway.replicas=3 (repeatable)")
    render_parser.add_argument("-o", "--output", metavar="DIR",
                               help="write one file per template into DIR instead of stdout")
    render_parser.add_argument("--release", default=DEFAULT_RELEASE,
                               help=f"the release name (default {DEFAULT_RELEASE})")
    render_parser.add_argument("--namespace", default=DEFAULT_NAMESPACE,
                               help=f"the release namespace (default {DEFAULT_NAMESPACE})")
    return {"k8s": cmd_k8s}


def cmd_k8s(args: argparse.Namespace) -> int:
    try:
        manifests = render(args.values, args.set, release=args.release,
                           namespace=args.namespace)
    except RenderError as exc:
        raise CliError(str(exc), 2) from None
    if args.output:
        for path in write(manifests, args.output):
            print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(to_stream(manifests))
    return 0
