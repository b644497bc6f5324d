"""Chevereto v1.1 dialect (not written yet)."""

from __future__ import annotations

from api.app_errors import plain_error
from api.dialect import Dialect

DIALECT = Dialect(name="chevereto", routes=[], render_error=plain_error, prefixes=('/api/1',))
