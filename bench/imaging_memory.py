"""Memory of ingesting large images, run by hand:
`.venv/bin/python bench/imaging_memory.py [--before OLD_CHECKOUT] [--after .] [--keep DIR]`
(e.g. `git worktree add /tmp/old <rev>` for OLD_CHECKOUT; without it only --after runs).

Makes 88 Mpx PNGs (RGBA and RGB) that are mostly flat (a few hundred KB, like the one in
issue 8), a 48 Mpx photo-like JPEG (baseline and progressive), and runs core.imaging.process_image
on each in a fresh subprocess, once with the code under --before and once with the code
under --after (each a checkout whose `core/` is imported), so both are measured in the
same run on the same machine. For each it prints the peak RSS during the call (VmHWM,
reset just before), the RSS left afterwards, and the wall time. The burst case runs
eight of the PNGs at once on four worker threads (as IMAGE_WORKERS=4 does) and prints
the peak and the RSS kept once all eight are done."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ("png", "png-rgb", "jpeg", "jpeg-progressive", "burst")
BURST = 8
BURST_WORKERS = 4


def make_inputs(folder: Path) -> dict[str, Path]:
    """Write the test images once into `folder` (kept between runs with --keep)."""
    from PIL import Image, ImageDraw

    paths = {
        "png": folder / "flat-88mpx-rgba.png",
        "png-rgb": folder / "flat-88mpx-rgb.png",
        "jpeg": folder / "photo-48mpx.jpg",
        "jpeg-progressive": folder / "photo-48mpx-progressive.jpg",
    }
    if not paths["png"].exists():
        img = Image.new("RGBA", (10_000, 8_800), (236, 240, 244, 0))
        draw = ImageDraw.Draw(img)
        draw.ellipse((1_000, 1_500, 4_500, 7_000), fill=(240, 200, 30, 255))
        draw.rectangle((6_000, 900, 9_000, 4_400), fill=(20, 40, 160, 200))
        draw.line((0, 0, 10_000, 8_800), fill=(200, 0, 0, 255), width=60)
        img.save(paths["png"], "PNG")
        img.convert("RGB").save(paths["png-rgb"], "PNG")
    if not paths["jpeg"].exists():
        size = (8_000, 6_000)
        noise = Image.effect_noise(size, 40)
        img = Image.merge(
            "RGB",
            (
                Image.linear_gradient("L").resize(size),
                noise,
                Image.linear_gradient("L").rotate(90).resize(size),
            ),
        )
        ImageDraw.Draw(img).ellipse((800, 1_200, 4_000, 5_600), fill=(240, 200, 30))
        img.save(paths["jpeg"], "JPEG", quality=90)
        img.save(paths["jpeg-progressive"], "JPEG", quality=90, progressive=True)
    return paths


def _status(field: str) -> int:
    """A field of /proc/self/status in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(field)


def child(code: Path, case: str, path: Path) -> None:
    """Run one case with the code under `code` and print one JSON line of figures."""
    sys.path.insert(0, str(code))
    from core.imaging import process_image

    raw = path.read_bytes()
    limit = 100_000_000
    process_image(_tiny_png(), max_pixels=limit)  # import and warm Pillow
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    started = time.perf_counter()
    if case == "burst":
        with ThreadPoolExecutor(BURST_WORKERS) as pool:
            results = list(pool.map(lambda _: process_image(raw, max_pixels=limit), range(BURST)))
        result = results[0]
    else:
        result = process_image(raw, max_pixels=limit)
    elapsed = time.perf_counter() - started
    peak = _status("VmHWM")
    del result
    if case == "burst":
        del results
    time.sleep(0.5)
    print(
        json.dumps({"before": before, "peak": peak, "after": _status("VmRSS"), "seconds": elapsed})
    )


def _tiny_png() -> bytes:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="an older checkout to compare with")
    parser.add_argument("--after", type=Path, default=ROOT, help="new checkout")
    parser.add_argument("--keep", type=Path, help="folder to keep the test images in")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument(
        "--child", nargs=3, metavar=("CODE", "CASE", "PATH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], Path(args.child[2]))
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        paths = make_inputs(folder)
        for name, path in paths.items():
            print(f"{name}: {path.stat().st_size / 1024:,.0f} KB")
        print(f"{'case':18} {'code':7} {'base MB':>8} {'peak MB':>8} {'kept MB':>8} {'s':>6}")
        for case in args.cases.split(","):
            path = paths["png" if case == "burst" else case]
            runs = [("before", args.before)] if args.before else []
            for label, code in [*runs, ("after", args.after)]:
                env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(code.resolve()), case, str(path)],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=600,
                    env=env,
                    cwd=code,
                )
                fig = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    f"{case:18} {label:7} {fig['before']:8} {fig['peak']:8} {fig['after']:8}"
                    f" {fig['seconds']:6.2f}"
                )


if __name__ == "__main__":
    main()
