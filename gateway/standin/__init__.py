"""A stand-in for the legacy warehouse server (Mobile SMARTS): plain HTTP, standard library only.

Data port: the documented OData API under /api/v1/ and /MobileSMARTS/api/v1/, plus test
endpoints (/echo, /bytes, /slow, /gzip-json). Print port: /print, /status and the same echo.
Used by demos (`make run`), the gateway's socket-level tests and the benchmark.
"""

from gateway.standin.main import main
from gateway.standin.server import Ports, StandinServer, serve

__all__ = ["Ports", "StandinServer", "main", "serve"]
