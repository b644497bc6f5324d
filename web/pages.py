"""The gallery's pages: each handler parses the request, calls a core service and
renders a template. With `HX-Request` (htmx) a handler answers only the fragment that
changes; every page works without JavaScript."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import BodyPartReader, web
from markupsafe import Markup
from multidict import MultiDict

from core.errors import DuplicateImage, Forbidden, GazouError, InvalidInput, NotFound
from core.models import (
    ORIENTATIONS,
    Filters,
    Image,
    IngestMetadata,
    Rating,
    SearchQuery,
    Sort,
    Status,
)
from core.reports import REASON_LABELS
from core.sessions import Session
from core.visibility import cacheable_by_anyone, trusted_uploader
from web.auth import (
    age_confirmed,
    check_csrf,
    confirm_age,
    csrf_token,
    current_session,
    end_session,
    remember_csrf,
    start_session,
)
from web.blacklist import blacklist_of
from web.keys import ASSETS, RENDERED, SERVICES, SESSIONS

PAGE_SIZE = 24
MAX_PAGE_NUMBER = 400  # 400 pages of 24: past the search's exact-total cap
MAX_UPLOAD_FILES = 20
MOD_PAGE = 50
SIMILAR_COUNT = 12
SORTS = ("newest", "oldest", "likes", "random")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _htmx(request: web.Request) -> bool:
    # A boosted request wants the whole page; only targeted swaps get fragments.
    return request.headers.get("HX-Request") == "true" and "HX-Boosted" not in request.headers


def human_size(size: int) -> str:
    """1536 -> '1.5 KB'."""
    if size < 1024:
        return f"{size} B"
    value, unit = size / 1024, "KB"
    if value >= 1024:
        value, unit = value / 1024, "MB"
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to go back to; anything else (another host, `//x`) is `default`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def _web_url(url: str | None) -> str | None:
    """A source URL fit for an href: http(s) only, never `javascript:`."""
    return url if url and re.match(r"https?://", url, re.IGNORECASE) else None


async def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A page (or fragment) with what every template needs: who is signed in, the
    CSRF token for its forms, the static files' URLs."""
    session = await current_session(request)
    services = request.app[SERVICES]
    full = {
        "session": session,
        "csrf": csrf_token(request, session),
        "assets": request.app[ASSETS],
        "public_url": services.settings.public_url,
        "age_ok": age_confirmed(request),
        "path_qs": request.path_qs,
        **context,
    }
    text = aiohttp_jinja2.render_string(template, request, full)
    return _html(request, text, status=status, headers=headers)


def _html(
    request: web.Request,
    text: str | bytes,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    if isinstance(text, bytes):  # kept already encoded
        response = web.Response(
            body=text, status=status, content_type="text/html", charset="utf-8", headers=headers
        )
    else:
        response = web.Response(text=text, status=status, content_type="text/html", headers=headers)
    remember_csrf(request, response)
    return response


def _see_other(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


async def _form(request: web.Request) -> MultiDict[str]:
    data = await request.post()
    return MultiDict((k, v) for k, v in data.items() if isinstance(v, str))


# ---- browsing ---------------------------------------------------------------------


@dataclass(slots=True)
class Browse:
    """What a listing asks for, read from the URL (so a search is a shareable link)."""

    tags: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    artist: str = ""
    character: str = ""
    rating: str = ""
    orientation: str = ""
    sort: str = "newest"
    page: int = 1
    q: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Browse:
        """Read and check the query string; InvalidInput for what can't be."""
        browse = cls(q=query.get("q", "").strip()[:1000])
        for word in browse.q.split(","):
            word = word.strip()
            if word.startswith("-") and word[1:].strip():
                browse.exclude.append(word[1:].strip())
            elif word:
                browse.tags.append(word)
        browse.artist = query.get("artist", "").strip()[:120]
        browse.character = query.get("character", "").strip()[:120]
        browse.rating = query.get("rating", "").strip()
        if browse.rating and browse.rating not in {r.value for r in Rating}:
            raise InvalidInput("rating must be sfw, questionable or nsfw", field="rating")
        browse.orientation = query.get("orientation", "").strip()
        if browse.orientation and browse.orientation not in ORIENTATIONS:
            raise InvalidInput(
                f"orientation must be one of {', '.join(ORIENTATIONS)}", field="orientation"
            )
        browse.sort = query.get("sort", "newest").strip() or "newest"
        if browse.sort not in SORTS:
            raise InvalidInput(f"sort must be one of {', '.join(SORTS)}", field="sort")
        page = query.get("page", "1").strip() or "1"
        if not page.isascii() or not page.isdigit() or not 1 <= int(page) <= MAX_PAGE_NUMBER:
            raise InvalidInput(f"page must be a number from 1 to {MAX_PAGE_NUMBER}", field="page")
        browse.page = int(page)
        return browse

    def ratings(self, age_ok: bool) -> frozenset[Rating]:
        """The ratings shown: sfw only until the visitor confirmed their age."""
        if not age_ok:
            return frozenset({Rating.SFW})
        return frozenset({Rating(self.rating)}) if self.rating else frozenset()

    def key(self) -> tuple[str | int, ...]:
        """What the listing's HTML depends on (tags and exclusions come from `q`)."""
        return (
            self.q,
            self.artist,
            self.character,
            self.rating,
            self.orientation,
            self.sort,
            self.page,
        )

    def link(self, **changes: Any) -> str:
        """The URL of this listing with some parameters changed."""
        if not changes:
            return _canonical_link(self.key())
        params = {
            "q": self.q,
            "artist": self.artist,
            "character": self.character,
            "rating": self.rating,
            "orientation": self.orientation,
            "sort": self.sort if self.sort != "newest" else "",
            "page": str(self.page) if self.page != 1 else "",
        }
        params.update({k: str(v) for k, v in changes.items()})
        kept = {k: v for k, v in params.items() if v and not (k == "page" and v == "1")}
        return "/?" + urlencode(kept) if kept else "/"


@lru_cache(maxsize=256)
def _canonical_link(key: tuple[str | int, ...]) -> str:
    # Every htmx swap pushes its listing's link: urlencode is 30 us of a cached page.
    q, artist, character, rating, orientation, sort, page = key
    return Browse(
        q=str(q),
        artist=str(artist),
        character=str(character),
        rating=str(rating),
        orientation=str(orientation),
        sort=str(sort),
        page=int(page),
    ).link(page=page)


async def _listing(request: web.Request, browse: Browse) -> dict[str, Any]:
    services = request.app[SERVICES]
    ratings = browse.ratings(age_confirmed(request))
    # The member's blacklisted tags join the excluded ones (none for a visitor).
    blacklist = await blacklist_of(request)
    if browse.sort == "random":
        filters = Filters(
            tags=tuple(browse.tags),
            exclude_tags=tuple(browse.exclude),
            ratings=ratings,
            artist=browse.artist or None,
            character=browse.character or None,
            orientation=browse.orientation or None,
        )
        images = await services.images.random(blacklist.apply(filters), PAGE_SIZE)
        return {"images": images, "total": None, "total_exact": True, "next_page": None}
    query = SearchQuery(
        tags=tuple(browse.tags),
        exclude_tags=tuple(browse.exclude),
        ratings=ratings,
        artist=browse.artist or None,
        character=browse.character or None,
        orientation=browse.orientation or None,
        sort=Sort(browse.sort),
        skip=(browse.page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
    )
    page = await services.images.search(blacklist.apply(query))
    more = page.skip + len(page.images) < page.total and browse.page < MAX_PAGE_NUMBER
    return {
        "images": page.images,
        "total": page.total,
        "total_exact": page.total_exact,
        "next_page": browse.page + 1 if more else None,
    }


async def home(request: web.Request) -> web.Response:
    """The grid of approved images, searched and filtered by the query string."""
    browse = Browse.parse(request.rel_url.query)
    return await _browse_page(request, browse, heading=None)


def _named(kind: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        query = dict(request.rel_url.query)
        services = request.app[SERVICES]
        if kind == "tag":
            tag = await services.images.tag(name)
            query["q"] = tag.name
            heading = f"Tag: {tag.name}"
        elif kind == "artist":
            artist = await services.images.artist(name)
            query["artist"] = artist.name
            heading = f"Artist: {artist.name}"
        else:
            character = await services.images.character(name)
            query["character"] = character.name
            heading = f"Character: {character.name}"
        return await _browse_page(request, Browse.parse(query), heading=heading)

    return handler


async def _browse_page(request: web.Request, browse: Browse, heading: str | None) -> web.Response:
    # A search for a blacklisted tag says so (core's words) instead of an empty grid.
    refusal = (await blacklist_of(request)).refusal(tuple(browse.tags))
    if refusal is not None:
        context: dict[str, Any] = {"browse": browse, "heading": heading, "refusal": refusal}
        if _htmx(request):
            headers = {"HX-Push-Url": browse.link()} if heading is None else None
            return await render(request, "_refusal.html", context, headers=headers)
        return await render(request, "home.html", context)
    listing = await _listing(request, browse)
    kept = request.app[RENDERED]
    # A search page is the page cache's object for as long as it keeps it, so its HTML
    # is kept as long; a random draw is new every time (not kept).
    images = listing["images"] if listing["total"] is not None else None
    session = await current_session(request)
    csrf = csrf_token(request, session)  # as on every page: a visitor's cookie is set
    if _htmx(request):
        # The address bar gets the listing's canonical link (no empty fields).
        headers = {"HX-Push-Url": browse.link()} if heading is None else None
        return _html(request, _grid(request, browse, listing, images), headers=headers)
    # A visitor's whole page depends only on the listing, the age cookie and the URL.
    page_key = ("page", browse.key(), heading, age_confirmed(request), request.path_qs)
    if session is None:
        page = kept.get(page_key, images)
        if page is not None:
            return _html(request, page)
    grid = Markup(_grid(request, browse, listing, images).decode())
    response = await render(
        request,
        "home.html",
        {"browse": browse, "heading": heading, "refusal": None, "grid": grid, **listing},
    )
    body = response.body
    if session is None and images is not None and isinstance(body, bytes):
        if csrf.encode() not in body:  # nothing of this visitor's in it
            kept.put(page_key, images, body)
    return response


def _grid(request: web.Request, browse: Browse, listing: dict[str, Any], images: object) -> bytes:
    """The listing's grid (the htmx fragment), kept while `images` is the listing's."""
    kept = request.app[RENDERED]
    key = ("grid", browse.key())
    grid = kept.get(key, images)
    if grid is None:
        env = request.app[aiohttp_jinja2.APP_KEY]
        grid = env.get_template("_grid.html").render(browse=browse, **listing).encode()
        if images is not None:
            kept.put(key, images, grid)
    return grid


async def tags(request: web.Request) -> web.Response:
    """Tags whose name starts with `q`: a page, or (htmx) the search box's suggestions."""
    prefix = request.rel_url.query.get("q", "").rsplit(",", 1)[-1].strip().lstrip("-")[:64]
    wanted = 10 if _htmx(request) else 100
    # LIKE's wildcards in what was typed only widen the match; the prefix test narrows
    # it back (the store's LIKE has no ESCAPE clause).
    found, total = await request.app[SERVICES].images.tags(prefix + "%", 0, wanted)
    found = [t for t in found if t.name.lower().startswith(prefix.lower())]
    context = {"tags": found, "total": total, "prefix": prefix}
    if _htmx(request):
        before = request.rel_url.query.get("q", "")
        lead = before.rsplit(",", 1)[0] + ", " if "," in before else ""
        excluded = "-" if before.rsplit(",", 1)[-1].strip().startswith("-") else ""
        return await render(request, "_tag_options.html", {**context, "lead": lead + excluded})
    return await render(request, "tags.html", context)


async def _member_view(request: web.Request, image: Image) -> dict[str, Any]:
    """What the image page offers who is asking: the Like button (with whether they like
    it) and the Report form (unless they reported it already); members only, approved
    images only (a pending one is liked or reported by no one yet)."""
    session = await current_session(request)
    if session is None or image.status is not Status.APPROVED:
        return {"can_act": False, "liked": False, "reported": False, "reasons": ()}
    services = request.app[SERVICES]
    return {
        "can_act": True,
        "liked": await services.images.liked(image.id, session.user),
        "reported": await services.reports.has_reported(image.id, session.user),
        "reasons": tuple((reason.value, label) for reason, label in REASON_LABELS.items()),
    }


async def image_page(request: web.Request) -> web.Response:
    """One image with everything known about it, to whoever holds its link."""
    services = request.app[SERVICES]
    image_id = request.match_info["id"]
    if not _UUID.fullmatch(image_id):
        raise NotFound("Image not found")
    query = request.rel_url.query
    if "expires" in query or "signature" in query:
        # Chevereto answers before the plain-link rule carried signed viewer links.
        services.signer.check(request.path, query.get("expires"), query.get("signature"))
    image = await services.images.get(image_id.lower(), include_pending=True)
    public = cacheable_by_anyone(image.status)
    blacklist = await blacklist_of(request)
    shown_anyway = query.get("show") == "1"
    base = services.settings.public_url
    context = {
        "image": image,
        "title": image.title or image.original_filename or image.filename,
        "direct_url": f"{base}/image/{image.id}.{image.extension}",
        "thumb_url": f"{base}/thumbnail/{image.id}.jpg",
        "page_url": f"{base}/i/{image.id}",
        "source_href": _web_url(image.source_url),
        "size_text": human_size(image.size),
        "indexable": public,
        "gated": image.nsfw and not age_confirmed(request),
        # A link to an image with a tag on the member's blacklist opens on a notice, as
        # boorus do; the picture is one click away (`?show=1`).
        "blacklisted": [] if shown_anyway else blacklist.blocked(tuple(image.tag_names)),
        # Approved look-alikes, sfw only until the visitor confirmed their age, none
        # with a tag on the member's blacklist.
        "similar": await services.images.similar(
            image,
            SIMILAR_COUNT,
            ratings=frozenset() if age_confirmed(request) else frozenset({Rating.SFW}),
            exclude_tags=blacklist.tags,
        ),
        **await _member_view(request, image),
    }
    headers = {"Cache-Control": "private, no-cache", "Vary": "Cookie"}
    if not public:
        # A pending image is for its link's holders, not search engines or shared caches.
        headers.update({"Cache-Control": "private, no-store", "X-Robots-Tag": "noindex"})
    return await render(request, "image.html", context, headers=headers)


# ---- the age gate -----------------------------------------------------------------


async def age_form(request: web.Request) -> web.Response:
    """Ask the visitor to confirm their age before images above sfw are shown."""
    target = safe_next(request.rel_url.query.get("next"))
    return await render(request, "age.html", {"next": target})


async def age_confirm(request: web.Request) -> web.Response:
    """Remember the confirmation (a cookie) and go back."""
    form = await _form(request)
    check_csrf(request, await current_session(request), form)
    response = _see_other(safe_next(form.get("next")))
    confirm_age(request, response)
    raise response  # a redirect carrying its cookie


# ---- signing in -------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    """Sign in with an admin token (members use /gallery on Discord)."""
    return await render(
        request, "login.html", {"next": safe_next(request.rel_url.query.get("next"), "/me")}
    )


async def login(request: web.Request) -> web.Response:
    """Open an owner's session with an admin token."""
    form = await _form(request)
    check_csrf(request, await current_session(request), form)
    target = safe_next(form.get("next"), "/me")
    try:
        session_id, _ = await request.app[SESSIONS].sign_in_with_token(form.get("token"))
    except GazouError as error:
        return await render(
            request, "login.html", {"next": target, "error": error.message}, status=error.status
        )
    response = _see_other(target)
    start_session(request, response, session_id)
    raise response


async def link_form(request: web.Request) -> web.Response:
    """The page a sign-in link opens: one button, so that a link preview fetching the
    URL does not use the link up."""
    secret = request.rel_url.query.get("t", "")[:100]
    return await render(request, "link.html", {"secret": secret})


async def link_redeem(request: web.Request) -> web.Response:
    """Use a one-time sign-in link and open the member's session."""
    form = await _form(request)
    check_csrf(request, await current_session(request), form)
    session_id, _ = await request.app[SESSIONS].redeem_link(form.get("t"))
    response = _see_other("/me")
    start_session(request, response, session_id)
    raise response


async def logout(request: web.Request) -> web.Response:
    """Sign out: forget the session and its cookie."""
    form = await _form(request)
    check_csrf(request, await current_session(request), form)
    await request.app[SESSIONS].end(request.cookies.get("gazou_session"))
    response = _see_other("/")
    end_session(request, response)
    raise response


async def _signed_in(request: web.Request) -> Session:
    session = await current_session(request)
    if session is None:
        if request.method == "GET":
            raise _see_other("/login?" + urlencode({"next": request.path_qs}))
        raise Forbidden("Sign in first.")
    return session


async def _owner(request: web.Request) -> Session:
    session = await _signed_in(request)
    if not session.owner:
        raise Forbidden("Only the owners can do that.")
    return session


# ---- members ----------------------------------------------------------------------


async def me(request: web.Request) -> web.Response:
    """The member's own uploads, with their status."""
    session = await _signed_in(request)
    page_text = request.rel_url.query.get("page", "1")
    if not page_text.isascii() or not page_text.isdigit() or not 1 <= int(page_text) <= 400:
        raise InvalidInput("page must be a number from 1 to 400", field="page")
    number = int(page_text)
    page = await request.app[SERVICES].images.search(
        SearchQuery(
            uploader=session.user.id,
            statuses=frozenset(Status),
            skip=(number - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
        )
    )
    more = page.skip + len(page.images) < page.total
    return await render(
        request,
        "me.html",
        {"page": page, "number": number, "next_page": number + 1 if more else None},
    )


async def upload_form(request: web.Request) -> web.Response:
    """The upload form (several files, tags, artist, rating)."""
    await _signed_in(request)
    return await render(request, "upload.html", {"ratings": list(Rating)})


@dataclass(slots=True)
class _Upload:
    fields: MultiDict[str] = field(default_factory=MultiDict)
    files: list[tuple[str, bytes]] = field(default_factory=list)


async def _read_upload(request: web.Request, limit: int) -> _Upload:
    """The multipart body, every part read under one byte budget."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    if not request.content_type.startswith("multipart/"):
        raise InvalidInput("Send the form as multipart/form-data")
    upload, used = _Upload(), 0
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        chunks: list[bytes] = []
        while chunk := await part.read_chunk(65536):
            used += len(chunk)
            if used > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=used)
            chunks.append(chunk)
        data = b"".join(chunks)
        if part.filename is not None:
            if data:  # an empty file input sends an empty part
                if len(upload.files) >= MAX_UPLOAD_FILES:
                    raise InvalidInput(f"At most {MAX_UPLOAD_FILES} files at once")
                upload.files.append((part.filename, data))
        elif part.name:
            upload.fields.add(part.name, data.decode("utf-8", "replace"))
    return upload


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


async def upload(request: web.Request) -> web.Response:
    """Ingest each file through the same pipeline and moderation as Discord and HTTP:
    an owner's uploads are approved at once, a member's wait for review."""
    session = await _signed_in(request)
    services = request.app[SERVICES]
    body = await _read_upload(request, services.settings.max_request_bytes)
    check_csrf(request, session, body.fields)
    if not body.files:
        raise InvalidInput("Choose at least one image")
    rating_text = body.fields.get("rating", "sfw")
    if rating_text not in {r.value for r in Rating}:
        raise InvalidInput("rating must be sfw, questionable or nsfw", field="rating")
    results: list[dict[str, Any]] = []
    for filename, data in body.files:
        meta = IngestMetadata(
            tags=_split(body.fields.get("tags")),
            rating=Rating(rating_text),
            artist=(body.fields.get("artist") or "").strip() or None,
            characters=_split(body.fields.get("characters")),
            title=(body.fields.get("title") or "").strip(),
            original_filename=filename[:255] or None,
        )
        try:
            image = await services.images.ingest(
                data, meta, session.user, trusted=trusted_uploader(owner=session.owner)
            )
            results.append({"filename": filename, "image": image, "error": None})
        except DuplicateImage as error:
            results.append(
                {
                    "filename": filename,
                    "image": None,
                    "error": error.message,
                    "existing": error.details.get("existing_id"),
                }
            )
        except GazouError as error:
            results.append({"filename": filename, "image": None, "error": error.message})
    stored = sum(1 for r in results if r["image"] is not None)
    # The upload page's script sends one file per request and shows each one's result
    # row beside its progress bar; without it, the whole results page.
    template = "_upload_results.html" if _htmx(request) else "uploaded.html"
    return await render(request, template, {"results": results}, status=200 if stored else 400)


# ---- owners -----------------------------------------------------------------------


async def _with_lookalikes(request: web.Request, images: list[Image]) -> list[dict[str, Any]]:
    services = request.app[SERVICES]
    rows = []
    for image in images:
        lookalike = None
        if image.near_duplicate_of:
            try:
                lookalike = await services.images.get(image.near_duplicate_of, include_pending=True)
            except NotFound:
                lookalike = None
        rows.append({"image": image, "lookalike": lookalike, "verdict": None, "error": None})
    return rows


async def moderation(request: web.Request) -> web.Response:
    """The queue of pending uploads, oldest first, a near-duplicate beside its twin."""
    await _owner(request)
    pending = await request.app[SERVICES].images.pending(limit=MOD_PAGE)
    decided = request.rel_url.query.get("decided", "")
    return await render(
        request,
        "mod.html",
        {
            "rows": await _with_lookalikes(request, pending),
            "decided": int(decided) if decided.isdigit() else None,
        },
    )


async def moderate(request: web.Request) -> web.Response:
    """Approve or reject one image (its row's button) or every ticked one."""
    session = await _owner(request)
    form = await _form(request)
    check_csrf(request, session, form)
    one = form.get("one", "")
    if one:
        action, _, image_id = one.partition(":")
        ids = [image_id]
    else:
        action, ids = form.get("action", ""), form.getall("ids", [])
    if action not in ("approve", "reject"):
        raise InvalidInput("action must be approve or reject", field="action")
    if not ids:
        raise InvalidInput("Tick at least one image")
    if len(ids) > MOD_PAGE:
        raise InvalidInput(f"At most {MOD_PAGE} images at once")
    images = request.app[SERVICES].images
    rows: list[dict[str, Any]] = []
    for image_id in ids:
        if not _UUID.fullmatch(image_id):
            raise InvalidInput("Not an image id", field="ids")
        try:
            if action == "approve":
                image = await images.approve(image_id, session.user)
            else:
                image = await images.reject(image_id, session.user)
            rows.append({"image": image, "verdict": image.status.value, "error": None})
        except GazouError as error:
            rows.append({"image": None, "id": image_id, "verdict": None, "error": error.message})
    if _htmx(request):
        return await render(request, "_mod_rows.html", {"rows": rows})
    done = sum(1 for r in rows if r["verdict"])
    raise _see_other(f"/mod?decided={done}")


def routes(assets_handler: Any) -> list[web.RouteDef]:
    """Every gallery route, named `gallery.<page>`."""
    return [
        web.get("/", home, name="gallery.home"),
        web.get("/tags", tags, name="gallery.tags"),
        web.get("/tags/{name}", _named("tag"), name="gallery.tag"),
        web.get("/artists/{name}", _named("artist"), name="gallery.artist"),
        web.get("/characters/{name}", _named("character"), name="gallery.character"),
        web.get("/i/{id}", image_page, name="gallery.image"),
        web.get("/age", age_form, name="gallery.age_form"),
        web.post("/age", age_confirm, name="gallery.age"),
        web.get("/login", login_form, name="gallery.login_form"),
        web.post("/login", login, name="gallery.login"),
        web.get("/login/link", link_form, name="gallery.link_form"),
        web.post("/login/link", link_redeem, name="gallery.link"),
        web.post("/logout", logout, name="gallery.logout"),
        web.get("/me", me, name="gallery.me"),
        web.get("/upload", upload_form, name="gallery.upload_form"),
        web.post("/upload", upload, name="gallery.upload"),
        web.get("/mod", moderation, name="gallery.mod"),
        web.post("/mod", moderate, name="gallery.moderate"),
        web.get("/static/{name}", assets_handler, name="gallery.static"),
    ]
