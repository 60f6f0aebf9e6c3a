"""Service definitions as typed on the command line and in ``%edgebook service add``."""

import pytest

from edgebook.services.errors import ServiceConfigError
from edgebook.services.manager import ServiceManager
from edgebook.services.options import parse_options


def test_a_lone_url_fills_the_kinds_url_field():
    assert parse_options("redis", ["redis://127.0.0.1:6379/1"]) == {
        "url": "redis://127.0.0.1:6379/1"}
    assert parse_options("postgres", ["postgresql://u:p@127.0.0.1/db", "max_size=4"]) == {
        "dsn": "postgresql://u:p@127.0.0.1/db", "max_size": 4}
    assert parse_options("sqlite", ["services/pets.sqlite3"]) == {
        "path": "services/pets.sqlite3"}


def test_options_are_typed_and_checked_by_the_kind():
    config = parse_options("s3", ["http://127.0.0.1:9000", "bucket=pets",
                                  "create_bucket=true", "timeout=2.5"])
    assert config == {"endpoint_url": "http://127.0.0.1:9000", "bucket": "pets",
                      "create_bucket": True, "timeout": 2.5}
    assert ServiceManager.check("files3", "s3", config)["bucket"] == "pets"


def test_two_urls_or_garbage_are_refused_clearly():
    with pytest.raises(ServiceConfigError, match="give a URL once"):
        parse_options("redis", ["redis://a", "redis://b"])
    with pytest.raises(ServiceConfigError, match="not valid JSON"):
        parse_options("s3", ["bucket=x", "extra={nope"])
