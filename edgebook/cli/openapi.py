"""The ``edgebook`` subcommands for OpenAPI: ``openapi``, ``import-openapi``, ``import-bundle``.

``add_parsers`` adds them to the CLI's subparsers; each ``cmd_*`` takes the parsed
arguments and returns an exit status, raising ``CliError`` for failures to report.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

from ..client import ensure_gateway
from ..openapi.bundle import BundleError, deploy_bundle, read_bundle
from ..openapi.document import ADMIN_DOCUMENT_PATH, dump_document, save_document
from ..openapi.notebook import import_spec
from ..openapi.spec import SpecError
from .common import CliError, admin_client


def add_parsers(sub: Any, with_data_dir: Callable) -> dict[str, Callable]:
    """Register the subcommands; returns ``{command: handler}`` for the CLI's table."""
    export = with_data_dir(sub.add_parser(
        "openapi", help="print (or save) the OpenAPI document of the running endpoints"))
    export.add_argument("-o", "--output", metavar="FILE",
                        help="write it to FILE (.json, or .yaml/.yml) instead of stdout")

    spec = with_data_dir(sub.add_parser(
        "import-openapi", help="make (or update) a notebook of handler cells from a spec"))
    spec.add_argument("spec", help="an OpenAPI 3.0 or 3.1 spec (YAML or JSON)")
    spec.add_argument("-o", "--output", metavar="NOTEBOOK",
                      help="the notebook to write (default: the spec's name with .ipynb)")
    spec.add_argument("--base-path", default="",
                      help="prefix every path with this (e.g. /v1)")
    spec.add_argument("--overwrite", action="store_true",
                      help="also rewrite handler cells edited since the last import")

    bundle = with_data_dir(sub.add_parser(
        "import-bundle", help="deploy a bundle ZIP (a spec and one .rs file per operation)"))
    bundle.add_argument("bundle", help="the bundle .zip")
    bundle.add_argument("--stubs", action="store_true",
                        help="deploy 501 stubs for operations without a handler file")
    bundle.add_argument("--base-path", default="", help="prefix every path with this")
    bundle.add_argument("--start", action="store_true",
                        help="start a background gateway if none is running")
    return {"openapi": cmd_openapi, "import-openapi": cmd_import_openapi,
            "import-bundle": cmd_import_bundle}


def cmd_openapi(args: argparse.Namespace) -> int:
    document = admin_client(args).request("GET", ADMIN_DOCUMENT_PATH)
    if args.output:
        save_document(document, args.output)
        print(f"wrote {args.output} ({len(document.get('paths') or {})} paths)",
              file=sys.stderr)
    else:
        sys.stdout.write(dump_document(document))
    return 0


def cmd_import_openapi(args: argparse.Namespace) -> int:
    output = args.output or os.path.splitext(os.path.basename(args.spec))[0] + ".ipynb"
    try:
        report = import_spec(args.spec, output, base_path=args.base_path,
                             overwrite=args.overwrite)
    except SpecError as exc:
        raise CliError(str(exc)) from None
    print(report.summary())
    if report.kept:
        print("kept your edits in: " + ", ".join(report.kept) +
              " (use --overwrite to replace them with fresh stubs)")
    if report.orphaned:
        print("no longer in the spec (left as they are): " + ", ".join(report.orphaned))
    return 0


def cmd_import_bundle(args: argparse.Namespace) -> int:
    try:
        bundle = read_bundle(args.bundle)
    except BundleError as exc:
        raise CliError(f"{args.bundle}: {exc}") from None
    client = (ensure_gateway(args.data_dir, started_by="edgebook import-bundle --start",
                             announce=_announce)
              if args.start else admin_client(args))
    report = deploy_bundle(client, bundle, stubs=args.stubs, base_path=args.base_path,
                           on_progress=lambda line: print(line, file=sys.stderr, flush=True))
    for item in report.deployed:
        print(f"deployed {item['name']}: {item['method']} {item['url']}")
    for item in report.failed:
        if item.get("rendered"):
            print(item["rendered"], file=sys.stderr)
        print(f"failed {item['name']} ({item['file'] or 'stub'}): {item['error']}",
              file=sys.stderr)
    if report.missing and not args.stubs:
        print("operations without a handler file (use --stubs to deploy 501 stubs): "
              + ", ".join(report.missing), file=sys.stderr)
    if report.unmatched:
        print("handler files matching no operationId: " + ", ".join(report.unmatched),
              file=sys.stderr)
    if not report.ok:
        raise CliError(f"{len(report.failed)} of {len(report.failed) + len(report.deployed)} "
                       "handlers did not deploy")
    return 0


def _announce(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
