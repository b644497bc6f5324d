"""SQLite rows -> models: the image read as SQLite writes it (its rid lists joined by
group_concat); the column lists and mappers are storage/rows.py's, shared with
PostgreSQL, under the names the SQLite mixins import."""

from __future__ import annotations

import string

from storage.rows import ARTIST_COLUMNS as _ARTIST_COLUMNS
from storage.rows import ARTIST_RID as _ARTIST_RID
from storage.rows import CHARACTER_COLUMNS as _CHARACTER_COLUMNS
from storage.rows import CHARACTER_RIDS as _CHARACTER_RIDS
from storage.rows import FILE_COLUMNS as _FILE_COLUMNS
from storage.rows import IMAGE_FROM as _IMAGE_FROM
from storage.rows import MEMBERS as _MEMBERS
from storage.rows import RATING as _RATING
from storage.rows import REPORT_COLUMNS as _REPORT_COLUMNS
from storage.rows import REQUEST_COLUMNS as _REQUEST_COLUMNS
from storage.rows import SEQ as _SEQ
from storage.rows import STATUS as _STATUS
from storage.rows import TAG_COLUMNS as _TAG_COLUMNS
from storage.rows import TAG_RIDS as _TAG_RIDS
from storage.rows import TOKEN_COLUMNS as _TOKEN_COLUMNS
from storage.rows import artist_of as _artist
from storage.rows import at as _at
from storage.rows import character_of as _character
from storage.rows import dt as _dt
from storage.rows import image_columns
from storage.rows import image_file_of as _image_file
from storage.rows import image_of as _image
from storage.rows import report_of as _report
from storage.rows import request_of as _request
from storage.rows import tag_of as _tag
from storage.rows import token_of as _token

__all__ = [
    "_ARTIST_COLUMNS",
    "_ARTIST_RID",
    "_CHARACTER_COLUMNS",
    "_CHARACTER_RIDS",
    "_FILE_COLUMNS",
    "_IMAGE_COLUMNS",
    "_IMAGE_FROM",
    "_MEMBERS",
    "_NOCASE",
    "_RATING",
    "_REPORT_COLUMNS",
    "_REQUEST_COLUMNS",
    "_SEQ",
    "_STATUS",
    "_TAG_COLUMNS",
    "_TAG_RIDS",
    "_TOKEN_COLUMNS",
    "_artist",
    "_at",
    "_character",
    "_dt",
    "_image",
    "_image_file",
    "_report",
    "_request",
    "_tag",
    "_token",
]

# Rows stay plain tuples, read by position: sqlite3.Row reads a name by comparing it
# with every column, ~8x slower than an index on these 38.
_IMAGE_COLUMNS = image_columns("group_concat({})")
# SQLite's NOCASE collation folds ASCII letters only: sort names the way it does.
_NOCASE = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
