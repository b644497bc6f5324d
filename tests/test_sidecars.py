"""Imports with their metadata: the sidecar parsers (core/sidecars.py) on the files
gallery-dl and booru exports write, and `bot.py import DIR --sidecars --map FILE` run as
a child process on a folder of real images, its results read back from the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.importer import with_sidecar
from core.models import Image, IngestMetadata, Rating, SearchQuery
from core.services import open_services
from core.sidecars import (
    Sidecar,
    SidecarError,
    parse_gallery_dl_json,
    parse_rating,
    parse_tag_list,
    parse_tag_map,
    read_sidecars,
    rename,
)
from tests.conftest import make_image, make_settings
from tests.test_cli import gazou

# What gallery-dl writes for a danbooru post with its `tags` option on (abridged).
DANBOORU = {
    "category": "danbooru",
    "subcategory": "post",
    "id": 6543210,
    "rating": "e",
    "source": "https://twitter.com/some_artist/status/1700000000000000000",
    "tag_string": "1girl hatsune_miku highres long_hair some_artist twintails vocaloid",
    "tags_artist": "some_artist",
    "tags_character": "hatsune_miku",
    "tags_copyright": "vocaloid",
    "tags_general": "1girl long_hair twintails",
    "tags_meta": "highres",
    "file_url": "https://cdn.donmai.us/original/ab/cd/abcd.jpg",
    "extension": "jpg",
}
# ... and for a pixiv artwork (tags as a list, the artist under `user`).
PIXIV = {
    "category": "pixiv",
    "subcategory": "artworks",
    "id": 98765432,
    "title": "夏の空",
    "tags": ["オリジナル", "風景", "空"],
    "user": {"id": 111, "name": "絵師", "account": "eshi"},
    "x_restrict": 1,
    "rating": "R-18",
    "url": "https://i.pximg.net/img-original/img/2024/01/01/00/00/00/98765432_p0.png",
}


# ---- the parsers ---------------------------------------------------------------


def test_danbooru_json_gives_category_tags_their_own_fields() -> None:
    sidecar = parse_gallery_dl_json(json.dumps(DANBOORU))
    assert sidecar.tags == ("1girl", "long_hair", "twintails", "vocaloid")
    assert sidecar.artist == "some_artist"
    assert sidecar.characters == ("hatsune_miku",)
    assert sidecar.rating is Rating.NSFW
    assert sidecar.source_name == "danbooru"
    assert sidecar.source_url == DANBOORU["source"]


def test_pixiv_json_gives_list_tags_user_title_and_the_artwork_url() -> None:
    sidecar = parse_gallery_dl_json(json.dumps(PIXIV))
    assert sidecar.tags == ("オリジナル", "風景", "空")
    assert sidecar.artist == "絵師"
    assert sidecar.title == "夏の空"
    assert sidecar.rating is Rating.NSFW
    # The artwork's page, not its file (`url`, which pixiv refuses to other sites).
    assert sidecar.source_url == "https://www.pixiv.net/artworks/98765432"


def test_a_file_url_is_the_source_when_nothing_better_is_given() -> None:
    data = {"category": "imgur", "url": "https://i.imgur.com/abc.png"}
    assert parse_gallery_dl_json(json.dumps(data)).source_url == "https://i.imgur.com/abc.png"


def test_pixiv_original_tags_as_objects_are_read_by_name() -> None:
    data = {**PIXIV, "tags": [{"name": "空", "translated_name": "sky"}, {"name": "夏"}]}
    assert parse_gallery_dl_json(json.dumps(data)).tags == ("空", "夏")


def test_space_separated_tags_and_a_twitter_author() -> None:
    sidecar = parse_gallery_dl_json(
        json.dumps({"category": "twitter", "tags": "cat  cute", "author": {"name": "kat"}})
    )
    assert sidecar.tags == ("cat", "cute") and sidecar.artist == "kat"
    assert sidecar.rating is None  # says nothing: the command line's rating applies


@pytest.mark.parametrize(
    ("value", "site", "rating"),
    [
        ("s", None, Rating.SFW),  # moebooru's "safe"
        ("s", "danbooru", Rating.QUESTIONABLE),  # danbooru's "sensitive"
        ("g", "danbooru", Rating.SFW),
        ("General", None, Rating.SFW),
        ("sensitive", None, Rating.QUESTIONABLE),
        ("q", None, Rating.QUESTIONABLE),
        ("Explicit", None, Rating.NSFW),
        (0, "pixiv", Rating.SFW),
        (2, "pixiv", Rating.NSFW),
        ("weird", None, None),
    ],
)
def test_ratings_map_onto_gazous_three(value: object, site: str | None, rating: object) -> None:
    assert parse_rating(value, site) is rating


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_a_broken_json_raises_a_readable_error(text: str) -> None:
    with pytest.raises(SidecarError, match="JSON"):
        parse_gallery_dl_json(text)


def test_tag_list_by_commas_newlines_and_namespaces() -> None:
    sidecar = parse_tag_list(
        "1girl, smile\nre:zero\nartist: someone\ncharacter:rem\nrating:q\n"
        "source:https://example.org/p/1\ntitle: A day\n\n"
    )
    assert sidecar.tags == ("1girl", "smile", "re:zero")
    assert sidecar.artist == "someone" and sidecar.characters == ("rem",)
    assert sidecar.rating is Rating.QUESTIONABLE
    assert sidecar.source_url == "https://example.org/p/1" and sidecar.title == "A day"


def test_tag_list_with_an_unknown_rating_is_refused() -> None:
    with pytest.raises(SidecarError, match="unknown rating"):
        parse_tag_list("cat\nrating: spicy\n")


def test_tag_map_reads_both_forms_comments_and_drops() -> None:
    mapping = parse_tag_map("# renames\n1girl = one girl\nSmile,smiling\n\nhighres =\n")
    assert mapping == {"1girl": "one girl", "smile": "smiling", "highres": ""}
    renamed = rename(Sidecar(tags=("1girl", "smile", "highres", "cat")), mapping)
    assert renamed.tags == ("one girl", "smiling", "cat")


def test_tag_map_names_its_bad_line() -> None:
    with pytest.raises(SidecarError, match="line 2"):
        parse_tag_map("a = b\njust one word\n")


def test_read_sidecars_merges_json_and_txt_json_first(tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    (tmp_path / "a.json").write_text(json.dumps({"tags": ["x"], "artist": "from json"}))
    (tmp_path / "a.jpg.txt").write_text("y, x\nartist: from txt\n")
    sidecar = read_sidecars(image)
    assert sidecar is not None
    assert sidecar.tags == ("x", "y") and sidecar.artist == "from json"
    assert sidecar.files == ("a.json", "a.jpg.txt")
    assert read_sidecars(tmp_path / "none.jpg") is None


def test_with_sidecar_adds_command_line_tags_and_trims_to_the_limits() -> None:
    meta = IngestMetadata(tags=("imported",), artist="fallback", rating=Rating.SFW)
    sidecar = Sidecar(tags=(*(f"t{n}" for n in range(250)), "x" * 65))
    out, note = with_sidecar(meta, sidecar, {})
    assert out.tags[0] == "imported" and len(out.tags) == 200
    assert out.artist == "fallback" and out.rating is Rating.SFW
    assert note is not None and "longer than 64" in note and "past the first 200" in note


# ---- the command line ------------------------------------------------------------


def sidecar_folder(root: Path) -> Path:
    """Real images with a sidecar of each kind, one with a broken JSON, one without."""
    folder = root / "downloads"
    (folder / "danbooru").mkdir(parents=True)
    (folder / "pixiv").mkdir()
    (folder / "danbooru" / "6543210.jpg").write_bytes(make_image("JPEG", seed=11))
    (folder / "danbooru" / "6543210.jpg.json").write_text(json.dumps(DANBOORU))
    (folder / "pixiv" / "98765432_p0.png").write_bytes(make_image("PNG", seed=12))
    (folder / "pixiv" / "98765432_p0.json").write_text(json.dumps(PIXIV, ensure_ascii=False))
    (folder / "listed.webp").write_bytes(make_image("WEBP", seed=13))
    (folder / "listed.txt").write_text(
        "1girl, smile\nartist:someone\nrating:q\nsource:https://example.org/p/1\n"
    )
    (folder / "broken.png").write_bytes(make_image("PNG", seed=14))
    (folder / "broken.png.json").write_text('{"tags": ["a",')
    (folder / "plain.png").write_bytes(make_image("PNG", seed=15))
    return folder


def write_map(root: Path) -> Path:
    path = root / "tags.map"
    path.write_text("# danbooru names to ours\n1girl = solo girl\nsmile,smiling\nhighres =\n")
    return path


async def stored_by_filename(data_dir: Path) -> dict[str, Image]:
    async with open_services(make_settings(data_dir)) as services:
        page = await services.images.search(SearchQuery(limit=50))
    return {image.original_filename or "": image for image in page.images}


async def test_import_with_sidecars_stores_their_metadata(tmp_path: Path) -> None:
    folder = sidecar_folder(tmp_path)
    result = gazou(
        tmp_path / "data",
        "import",
        str(folder),
        "--sidecars",
        "--map",
        str(write_map(tmp_path)),
        "--tags",
        "imported",
        "--rating",
        "sfw",
    )
    # The broken sidecar's image is refused (and named), so the exit code is 1.
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    # Sidecars are neither imported nor counted as "not images".
    assert lines[0] == "imported 4, duplicates 0, refused 1, not images 0"
    assert "with metadata from sidecars: 3" in result.stdout
    assert "broken.png: sidecar broken.png.json: not JSON" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr

    stored = await stored_by_filename(tmp_path / "data")
    assert sorted(stored) == ["6543210.jpg", "98765432_p0.png", "listed.webp", "plain.png"]

    danbooru = stored["6543210.jpg"]
    assert sorted(danbooru.tag_names) == [
        "imported",
        "long_hair",
        "solo girl",
        "twintails",
        "vocaloid",
    ]
    assert danbooru.artist is not None and danbooru.artist.name == "some_artist"
    assert [c.name for c in danbooru.characters] == ["hatsune_miku"]
    assert danbooru.rating is Rating.NSFW
    assert danbooru.source_name == "danbooru" and danbooru.source_url == DANBOORU["source"]

    pixiv = stored["98765432_p0.png"]
    assert sorted(pixiv.tag_names) == sorted(["imported", "オリジナル", "風景", "空"])
    assert pixiv.artist is not None and pixiv.artist.name == "絵師"
    assert pixiv.title == "夏の空" and pixiv.rating is Rating.NSFW

    listed = stored["listed.webp"]
    assert sorted(listed.tag_names) == ["imported", "smiling", "solo girl"]
    assert listed.artist is not None and listed.artist.name == "someone"
    assert listed.rating is Rating.QUESTIONABLE
    assert listed.source_url == "https://example.org/p/1"

    plain = stored["plain.png"]
    assert plain.tag_names == ["imported"] and plain.rating is Rating.SFW
    assert plain.artist is None and plain.source_url is None


async def test_import_with_sidecars_resumes_and_picks_up_a_fixed_sidecar(
    tmp_path: Path,
) -> None:
    folder = sidecar_folder(tmp_path)
    gazou(tmp_path / "data", "import", str(folder), "--sidecars")
    again = gazou(tmp_path / "data", "import", str(folder), "--sidecars")
    assert again.stdout.splitlines()[0] == "imported 0, duplicates 4, refused 1, not images 0"
    # The refused image was left out, not stored bare: fixing its sidecar and running
    # the same command again brings it in with its metadata.
    (folder / "broken.png.json").write_text('{"tags": ["a", "b"], "rating": "q"}')
    fixed = gazou(tmp_path / "data", "import", str(folder), "--sidecars")
    assert fixed.returncode == 0, fixed.stdout
    assert fixed.stdout.splitlines()[0] == "imported 1, duplicates 4, refused 0, not images 0"
    broken = (await stored_by_filename(tmp_path / "data"))["broken.png"]
    assert sorted(broken.tag_names) == ["a", "b"] and broken.rating is Rating.QUESTIONABLE


def test_import_without_sidecars_ignores_them(tmp_path: Path) -> None:
    folder = sidecar_folder(tmp_path)
    result = gazou(tmp_path / "data", "import", str(folder))
    # Every image goes in with the command line's metadata; the sidecars are files
    # that are not images, as before.
    assert result.stdout.splitlines()[0] == "imported 5, duplicates 0, refused 0, not images 4"


def test_a_bad_map_file_exits_2_naming_its_line(tmp_path: Path) -> None:
    folder = sidecar_folder(tmp_path)
    bad = tmp_path / "bad.map"
    bad.write_text("ok = fine\nnonsense\n")
    result = gazou(tmp_path / "data", "import", str(folder), "--sidecars", "--map", str(bad))
    assert result.returncode == 2
    assert "line 2" in result.stderr and "Traceback" not in result.stderr
    missing = gazou(
        tmp_path / "data", "import", str(folder), "--map", str(tmp_path / "nowhere.map")
    )
    assert missing.returncode == 2 and "nowhere.map" in missing.stderr
