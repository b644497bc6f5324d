"""The web gallery: server-rendered pages over the core services (Jinja2 templates via
aiohttp-jinja2, one vendored htmx file, one stylesheet). A transport like api/ and
cogs/: it imports neither; the app factory mounts it with `build_site(services)`."""

from web.site import Site, build_site

__all__ = ["Site", "build_site"]
