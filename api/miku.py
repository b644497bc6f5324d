"""MikuAPI v2 dialect (not written yet)."""

from __future__ import annotations

from api.app_errors import plain_error
from api.dialect import Dialect

DIALECT = Dialect(name="miku", routes=[], render_error=plain_error, prefixes=('/api/v2', '/api/add', '/img'))
