"""The metadata downloaders write next to each image ("sidecars"), read for imports.

Two kinds, looked for beside `name.jpg` in this order:
- gallery-dl's JSON (`name.jpg.json` or `name.json`): the fields differ by site, so
  each is looked for under the names the common extractors use (danbooru's
  `tags_<category>` / `tag_string_<category>`, pixiv's `tags` + `user`, twitter's
  `author`, ...);
- tag lists (`name.jpg.txt` or `name.txt`) as booru exports and training sets write
  them: comma- or newline-separated; `artist:`, `creator:`, `character:`, `rating:`,
  `source:` and `title:` lines (hydrus' namespaces) say what else they are.

Everything here is pure but `read_sidecars`, which reads the files: the parsers take
text and return a `Sidecar` or raise `SidecarError` with a message for the summary.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.models import Rating

# The files a sidecar may be (never imported as images, never counted as "not images").
SIDECAR_SUFFIXES = frozenset({".json", ".txt"})
# A sidecar larger than this is not metadata (a gallery-dl JSON is a few KB).
MAX_SIDECAR_BYTES = 1024 * 1024

# Rating words of the boorus and pixiv, onto gazou's three. Danbooru's "sensitive"
# (suggestive, not explicit) is questionable: gazou's sfw must be safe anywhere.
RATING_WORDS: Mapping[str, Rating] = {
    "g": Rating.SFW,
    "general": Rating.SFW,
    "safe": Rating.SFW,
    "sfw": Rating.SFW,
    "all-ages": Rating.SFW,
    "sensitive": Rating.QUESTIONABLE,
    "q": Rating.QUESTIONABLE,
    "questionable": Rating.QUESTIONABLE,
    "e": Rating.NSFW,
    "explicit": Rating.NSFW,
    "nsfw": Rating.NSFW,
    "r-18": Rating.NSFW,
    "r-18g": Rating.NSFW,
}
# Danbooru has used "s" for "sensitive" since 2022; the older boorus (moebooru:
# yande.re, konachan) for "safe".
_SENSITIVE_S = frozenset({"danbooru"})

_TXT_NAMESPACES = {
    "artist": "artist",
    "creator": "artist",
    "character": "character",
    "rating": "rating",
    "source": "source",
    "title": "title",
}
_URL = re.compile(r"https?://\S+\Z", re.IGNORECASE)


class SidecarError(ValueError):
    """A sidecar that cannot be read as metadata; the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class Sidecar:
    """What the sidecars of one image say about it (empty fields: they say nothing)."""

    tags: tuple[str, ...] = ()
    artist: str | None = None
    characters: tuple[str, ...] = ()
    rating: Rating | None = None
    title: str = ""
    source_name: str | None = None
    source_url: str | None = None
    files: tuple[str, ...] = field(default=(), compare=False)  # which sidecars said it

    def merged(self, other: Sidecar) -> Sidecar:
        """This sidecar completed by `other`: tags and characters of both, the rest
        from `other` only where this one says nothing."""
        return Sidecar(
            tags=_unique((*self.tags, *other.tags)),
            artist=self.artist or other.artist,
            characters=_unique((*self.characters, *other.characters)),
            rating=self.rating or other.rating,
            title=self.title or other.title,
            source_name=self.source_name or other.source_name,
            source_url=self.source_url or other.source_url,
            files=(*self.files, *other.files),
        )


def parse_rating(value: object, site: str | None = None) -> Rating | None:
    """gazou's rating for a booru or pixiv rating (`s`, `explicit`, pixiv's
    `x_restrict` 0/1/2...); None for a value it does not know."""
    if isinstance(value, bool):
        return Rating.NSFW if value else Rating.SFW
    if isinstance(value, int):
        return Rating.NSFW if value > 0 else Rating.SFW
    if not isinstance(value, str):
        return None
    word = value.strip().lower()
    if word == "s":
        return Rating.QUESTIONABLE if site in _SENSITIVE_S else Rating.SFW
    return RATING_WORDS.get(word)


def parse_gallery_dl_json(text: str) -> Sidecar:
    """The metadata of one gallery-dl `.json`; SidecarError if it is not such a file."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SidecarError(f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise SidecarError("not a gallery-dl metadata object (the JSON is not an object)")
    site = _text(data.get("category")) or None
    site_key = site.lower() if site else None

    # Danbooru-style category tags (gallery-dl's `tags: true` option, or the API's
    # own tag_string_*): the artist and characters get their own fields, and the
    # general and copyright tags are the tags (meta tags like `highres` are left out).
    def category(name: str) -> tuple[str, ...]:
        return _words(data.get(f"tags_{name}")) or _words(data.get(f"tag_string_{name}"))

    general = category("general")
    if general:
        tags = _unique((*general, *category("copyright")))
    else:
        tags = _words(data.get("tags")) or _words(data.get("tag_string"))
    artists = category("artist")
    artist = artists[0] if artists else _person(data, "artist", "user", "author", "uploader")

    rating = None
    for key in ("rating", "x_restrict"):
        if key in data:
            rating = parse_rating(data[key], site_key)
            if rating is not None:
                break
    if rating is None and isinstance(data.get("sensitive"), bool):
        rating = Rating.NSFW if data["sensitive"] else None  # twitter, mastodon

    # The page the image was posted on rather than its file (pixiv's files refuse
    # visitors from elsewhere): `url` is gallery-dl's file URL, the last resort.
    links = [_text(data.get("post_url")), _text(data.get("source"))]
    if site_key == "pixiv" and isinstance(data.get("id"), int):
        links.append(f"https://www.pixiv.net/artworks/{data['id']}")
    links.append(_text(data.get("url")))
    source = next((link for link in links if _URL.match(link)), None)
    return Sidecar(
        tags=tags,
        artist=artist,
        characters=category("character"),
        rating=rating,
        title=_text(data.get("title")),
        source_name=site,
        source_url=source,
    )


def parse_tag_list(text: str) -> Sidecar:
    """The tags (and namespaced fields) of one `.txt` tag list."""
    if "\x00" in text:
        raise SidecarError("not a tag list (binary data)")
    tags: list[str] = []
    characters: list[str] = []
    fields: dict[str, str] = {}
    for item in re.split(r"[,\n]", text):
        item = item.strip()
        if not item:
            continue
        namespace, _, value = item.partition(":")
        kind = _TXT_NAMESPACES.get(namespace.strip().lower()) if value.strip() else None
        # `source:https://...` is a field; a tag such as `re:zero` stays a tag.
        if kind is None:
            tags.append(item)
        elif kind == "character":
            characters.append(value.strip())
        else:
            fields.setdefault(kind, value.strip())
    rating = parse_rating(fields["rating"]) if "rating" in fields else None
    if "rating" in fields and rating is None:
        raise SidecarError(f"unknown rating {fields['rating']!r}")
    source = fields.get("source")
    return Sidecar(
        tags=_unique(tags),
        artist=fields.get("artist"),
        characters=_unique(characters),
        rating=rating,
        title=fields.get("title", ""),
        source_url=source if source and _URL.match(source) else None,
    )


def parse_tag_map(text: str) -> dict[str, str]:
    """A `--map` file: one `old = new` or `old,new` per line (`#` starts a comment,
    blank lines are skipped, an empty `new` drops the tag). Keys are lowercased:
    tags compare case-insensitively. SidecarError names the first bad line."""
    mapping: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        # Only whole lines are comments: a tag may hold a `#` (`c#`).
        if not line or line.startswith("#"):
            continue
        separator = "=" if "=" in line else ","
        old, found, new = line.partition(separator)
        old, new = old.strip(), new.strip()
        if not found or not old:
            raise SidecarError(f"line {number}: expected `old = new` or `old,new`, got {line!r}")
        mapping[old.lower()] = new
    return mapping


def rename(sidecar: Sidecar, mapping: Mapping[str, str]) -> Sidecar:
    """`sidecar` with its tags, characters and artist renamed by a `--map`."""
    if not mapping:
        return sidecar

    def names(values: Iterable[str]) -> tuple[str, ...]:
        return _unique(n for n in (mapping.get(v.lower(), v) for v in values) if n)

    artist = mapping.get(sidecar.artist.lower(), sidecar.artist) if sidecar.artist else None
    return replace(
        sidecar,
        tags=names(sidecar.tags),
        characters=names(sidecar.characters),
        artist=artist or None,
    )


def sidecar_paths(image: Path) -> list[Path]:
    """Where the sidecars of `image` may be, JSON first: `a.jpg.json`, `a.json`,
    `a.jpg.txt`, `a.txt`."""
    return [
        image.with_name(image.name + ".json"),
        image.with_suffix(".json"),
        image.with_name(image.name + ".txt"),
        image.with_suffix(".txt"),
    ]


def read_sidecars(image: Path) -> Sidecar | None:
    """What the sidecars next to `image` say (at most one JSON and one tag list, the
    first found of each), None when it has none; SidecarError naming the file when
    one cannot be read or parsed."""
    found: Sidecar | None = None
    kinds: set[str] = set()
    for path in sidecar_paths(image):
        kind = path.suffix
        if kind in kinds or not path.is_file():
            continue
        kinds.add(kind)
        try:
            if path.stat().st_size > MAX_SIDECAR_BYTES:
                raise SidecarError(f"larger than {MAX_SIDECAR_BYTES // 1024} KB")
            text = path.read_text(encoding="utf-8-sig")
            parsed = parse_gallery_dl_json(text) if kind == ".json" else parse_tag_list(text)
        except UnicodeDecodeError:
            raise SidecarError(f"{path.name}: not UTF-8 text") from None
        except OSError as exc:
            raise SidecarError(f"{path.name}: unreadable ({exc.strerror})") from None
        except SidecarError as exc:
            raise SidecarError(f"{path.name}: {exc}") from None
        parsed = replace(parsed, files=(path.name,))
        found = parsed if found is None else found.merged(parsed)
    return found


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _words(value: Any) -> tuple[str, ...]:
    """Tags given as a list (of names, or of pixiv's {"name": ...}) or as one
    space-separated string (the boorus': a tag never holds a space there)."""
    if isinstance(value, str):
        return _unique(value.split())
    if isinstance(value, list):
        names = (v.get("name") if isinstance(v, dict) else v for v in value)
        return _unique(n.strip() for n in names if isinstance(n, str) and n.strip())
    return ()


def _person(data: Mapping[str, Any], *keys: str) -> str | None:
    """The first name found under `keys`: a string, a list of strings, or an object
    with `name` (pixiv's and twitter's user)."""
    for key in keys:
        value = data.get(key)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, dict):
            value = value.get("name") or value.get("username") or value.get("nick")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    """`values` without repeats (compared case-insensitively, as tags are), in order."""
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(value.lower(), value)
    return tuple(seen.values())
