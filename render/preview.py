"""The workbook as a reader prints it: one sheet to PDF (LibreOffice headless) and PNG.

`make docs` writes the Summary page of the newest completed run as
`<SOXTRAIL_HOME>/docs/workbook-summary.png` (and `.pdf`) beside the dbt docs site:

    python -m render.preview [--run RUN_ID] [--out FOLDER]

LibreOffice (Debian `libreoffice-calc`) prints, pdftoppm (`poppler-utils`) draws the
PNG; `make system-deps` installs both. LibreOffice prints only visible sheets, so a
copy of the workbook with every other sheet hidden prints just the one asked for.
Each conversion uses its own LibreOffice profile (`-env:UserInstallation`):
concurrent `soffice` runs sharing one silently do nothing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from soxtrail.kernel.errors import ConfigError, PipelineError

SOFFICE = "soffice"
PDFTOPPM = "pdftoppm"
CONVERT_TIMEOUT = 240  # seconds; a cold LibreOffice start is ~5-20 s
SUMMARY_PNG = "workbook-summary.png"
_SHEET_TAG = re.compile(rb"<sheet [^>]*?/>")
_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


class PreviewError(PipelineError):
    """LibreOffice is missing or did not convert the workbook."""


def soffice() -> str:
    """The path of LibreOffice's `soffice`; PreviewError naming how to install it."""
    found = shutil.which(SOFFICE)
    if found is None:
        raise PreviewError("LibreOffice is not installed (no `soffice` on PATH): "
                           "`make system-deps` installs Debian's libreoffice-calc")
    return found


def only_sheet(xlsx: Path, sheet: str, out: Path) -> Path:
    """A copy of `xlsx` at `out` in which every sheet but `sheet` is hidden (and `sheet` is
    the active one): LibreOffice prints visible sheets only."""
    with zipfile.ZipFile(xlsx) as source:
        names = source.namelist()
        workbook = source.read("xl/workbook.xml")
        tags = _SHEET_TAG.findall(workbook)
        wanted = [i for i, tag in enumerate(tags) if f'name="{_xml(sheet)}"'.encode() in tag]
        if not wanted:
            raise PreviewError(f"{xlsx.name} has no sheet {sheet!r}")
        for i, tag in enumerate(tags):
            if i == wanted[0]:
                continue
            hidden = re.sub(rb' state="[a-zA-Z]+"', b"", tag).replace(b"<sheet ",
                                                                       b'<sheet state="hidden" ')
            workbook = workbook.replace(tag, hidden, 1)
        # LibreOffice prints a hidden sheet's print area: keep the kept sheet's only
        workbook = re.sub(
            rb'<definedName name="_xlnm.Print_Area" localSheetId="(\d+)"[^>]*>[^<]*'
            rb"</definedName>",
            lambda m: m.group(0) if int(m.group(1)) == wanted[0] else b"", workbook)
        workbook = re.sub(rb'(<workbookView[^>]*?) activeTab="\d+"', rb"\1", workbook)
        workbook = workbook.replace(b"<workbookView ",
                                    f'<workbookView activeTab="{wanted[0]}" '.encode(), 1)
        keep = _sheet_part(source, tags[wanted[0]])
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as copy:
            for name in names:
                data = workbook if name == "xl/workbook.xml" else source.read(name)
                if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                    # a selected sheet is printed even when hidden: select only the one kept
                    data = data.replace(b' tabSelected="1"', b"")
                    if name == keep:
                        data = data.replace(b"<sheetView ", b'<sheetView tabSelected="1" ', 1)
                copy.writestr(name, data)
    return out


def _sheet_part(book: zipfile.ZipFile, tag: bytes) -> str:
    """The zip member of a `<sheet>` element of workbook.xml (through its relationship)."""
    rid = re.search(rb'r:id="([^"]+)"', tag)
    rels = book.read("xl/_rels/workbook.xml.rels")
    for rel in re.findall(rb"<Relationship [^>]*?/>", rels):
        if rid is not None and f'Id="{rid.group(1).decode()}"'.encode() in rel:
            target = re.search(rb'Target="([^"]+)"', rel)
            if target is not None:
                path = target.group(1).decode()
                return path.lstrip("/") if path.startswith("/") else f"xl/{path}"
    raise PreviewError(f"workbook.xml names a sheet without a part: {tag.decode()[:80]}")


def _xml(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def convert(path: Path, fmt: str, out_dir: Path, profile: Path) -> Path:
    """`soffice --headless --convert-to <fmt>` of `path` into `out_dir`, with its own
    profile folder `profile`; the file written, or PreviewError."""
    out_dir.mkdir(parents=True, exist_ok=True)
    profile.mkdir(parents=True, exist_ok=True)
    command = [soffice(), f"-env:UserInstallation={profile.resolve().as_uri()}", "--headless",
               "--norestore", "--nolockcheck", "--convert-to", fmt, "--outdir", str(out_dir),
               str(path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CONVERT_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise PreviewError(f"soffice did not convert {path.name} to {fmt} within "
                           f"{CONVERT_TIMEOUT} s") from exc
    written = out_dir / f"{path.stem}.{fmt.split(':', 1)[0]}"
    if done.returncode != 0 or not written.is_file():
        detail = " ".join((done.stderr or done.stdout or "").split())[:300]
        raise PreviewError(f"soffice did not convert {path.name} to {fmt} "
                           f"(exit {done.returncode}){': ' + detail if detail else ''}")
    return written


def pdf_pages(pdf: Path) -> int:
    """The number of pages of a PDF (its `/Type /Page` objects; LibreOffice writes no
    compressed object streams)."""
    return len(_PAGE_OBJECT.findall(pdf.read_bytes()))


def sheet_pdf(xlsx: Path, sheet: str, out_dir: Path, *, profile: Path) -> Path:
    """One sheet of a workbook printed to `<out_dir>/<sheet>.pdf` as its print setup says."""
    with tempfile.TemporaryDirectory(prefix="soxtrail-preview-") as scratch:
        single = only_sheet(xlsx, sheet, Path(scratch) / f"{_file_name(sheet)}.xlsx")
        pdf = convert(single, "pdf", Path(scratch), profile)
        target = out_dir / pdf.name
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(pdf), target)
    return target


def pdf_png(pdf: Path, png: Path, *, resolution: int = 110) -> Path:
    """The first page of `pdf` as `png`, through pdftoppm (Debian `poppler-utils`, installed
    by `make system-deps`; LibreOffice Calc alone has no working PNG export headless)."""
    tool = shutil.which(PDFTOPPM)
    if tool is None:
        raise PreviewError("pdftoppm is not installed: `make system-deps` installs Debian's "
                           "poppler-utils")
    png.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([tool, "-png", "-r", str(resolution), "-f", "1", "-l", "1", "-singlefile",
                    str(pdf), str(png.with_suffix(""))],
                   check=True, capture_output=True, timeout=CONVERT_TIMEOUT)
    return png


def _file_name(sheet: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", sheet).strip("-") or "sheet"


def summary_png(xlsx: Path, out_dir: Path, *, sheet: str = "Summary") -> tuple[Path, Path]:
    """The Summary sheet of `xlsx` as `<out_dir>/workbook-summary.pdf` and `.png`."""
    pdf = out_dir / Path(SUMMARY_PNG).with_suffix(".pdf").name
    with tempfile.TemporaryDirectory(prefix="soxtrail-preview-") as scratch:
        printed = sheet_pdf(xlsx, sheet, Path(scratch), profile=Path(scratch) / "profile")
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(printed), pdf)
    return pdf, pdf_png(pdf, out_dir / SUMMARY_PNG)


def main(argv: list[str] | None = None) -> int:
    """`python -m render.preview`: the newest completed run's Summary page for the docs."""
    from render.workbook import render_workbook
    from soxtrail.kernel import runs
    from soxtrail.kernel.database import home, resolve_database

    parser = argparse.ArgumentParser(prog="python -m render.preview", description=main.__doc__)
    parser.add_argument("--run", help="run id (default: the newest completed run)")
    parser.add_argument("--out", type=Path, help="folder (default: <SOXTRAIL_HOME>/docs)")
    parser.add_argument("--template", default="default")
    args = parser.parse_args(argv)
    out_dir = args.out or home() / "docs"
    try:
        soffice()
        with resolve_database().connect() as conn:
            run = (runs.get_run(conn, args.run) if args.run
                   else runs.latest_completed_run(conn))
            if run is None:
                raise ConfigError("no completed run yet: run `make quarter Q=…` first")
            with tempfile.TemporaryDirectory(prefix="soxtrail-preview-") as scratch:
                result = render_workbook(conn, run_id=run.id, template=args.template,
                                         out=Path(scratch) / "report.xlsx")
                pdf, png = summary_png(result.xlsx, out_dir,
                                       sheet=_summary_sheet(result.xlsx))
    except (ConfigError, PipelineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {png} (the workbook's Summary page of run {run.id}, {run.quarter})")
    print(f"wrote {pdf}")
    return 0


def _summary_sheet(xlsx: Path) -> str:
    """The first sheet's name (the template's Summary sheet)."""
    with zipfile.ZipFile(xlsx) as book:
        first = _SHEET_TAG.search(book.read("xl/workbook.xml"))
    match = re.search(rb'name="([^"]*)"', first.group(0)) if first else None
    if match is None:
        raise PreviewError(f"{xlsx.name} has no sheets")
    return (match.group(1).decode().replace("&quot;", '"').replace("&lt;", "<")
            .replace("&gt;", ">").replace("&amp;", "&"))


if __name__ == "__main__":
    sys.exit(main())
