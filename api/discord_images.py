"""Discord Images dialect (not written yet)."""

from __future__ import annotations

from api.app_errors import plain_error
from api.dialect import Dialect

DIALECT = Dialect(name="discordimages", routes=[], render_error=plain_error, prefixes=('/api/upload',))
