"""What every ``edgebook`` subcommand shares: its error type and the admin client."""

from __future__ import annotations

import argparse
import logging
import sys

from ..client import AdminClient, AdminError


class CliError(Exception):
    """A failure to report on stderr without a traceback, with an exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.message = message
        self.status = status


def admin_client(args: argparse.Namespace) -> AdminClient:
    try:
        return AdminClient.from_data_dir(args.data_dir)
    except AdminError as exc:
        raise CliError(exc.message) from None


def configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
