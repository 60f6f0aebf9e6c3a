"""OpenAPI for edgebook: describe the live endpoints, and start endpoints from a spec.

- ``samples``: a bounded store of real request/response pairs per endpoint and status,
  filled by the supervisor on the hot path (see ``SampleStore.record``).
- ``rust``: what a handler's source says about its API: an ``//! ```openapi`` block and
  the ``#[derive(Deserialize)]`` structs it declares, as JSON Schema.
- ``export``: the OpenAPI 3.1 document of the running endpoints (data plane and admin API).
- ``spec``: reading an OpenAPI 3.0/3.1 spec (YAML or JSON) into operations.
- ``stubs``: one compiling Rust handler per operation, answering 501 with the example.
- ``notebook``: a notebook of ``%%rust_handler`` cells from a spec, updated in place.
- ``bundle``: the original gateway's bundle ZIPs (a spec plus one ``.rs`` per operation).
"""

from .samples import SampleStore

__all__ = ["SampleStore"]
