"""Services for handlers: SQLite, PostgreSQL, Redis and object storage behind one manager.

Handlers reach them with ``service_call`` frames (docs/protocol.md, docs/services.md); the
gateway runs each call on a pooled async client and answers with a ``service_reply`` frame.
Credentials stay in the gateway. Start with ``ServiceManager``.
"""

from .errors import ERROR_KINDS, ServiceConfigError, ServiceError
from .manager import BUILTIN, KINDS, ServiceManager
from .secrets import MASK, mask

__all__ = ["BUILTIN", "ERROR_KINDS", "KINDS", "MASK", "ServiceConfigError", "ServiceError",
           "ServiceManager", "mask"]
