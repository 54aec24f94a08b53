"""One report model (reports/model.py), three file formats: CSV (the standard library's csv),
XLSX (openpyxl) and PDF (fpdf2). Each starts with the header (report, tenant, period,
generated-at, details) and the summary section; every figure is the same text in all three
(`model.text`): money to its currency's minor unit, right-aligned.

CSV layout, readable by a spreadsheet and by `read_csv` below::

    report,Client statement
    tenant,acme
    ...                                  <- header lines: name,value
                                         <- a blank line
    section,summary,Summary              <- each section: its key and title,
    login,server,currency,opening,...    <- its column names,
    70001,ACME-MT5-Live,USD,100.00,...   <- its rows,
                                         <- a blank line
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Literal

from anyascii import anyascii

from reports.model import Cell, Column, Money, Report, Section, text

Format = Literal["csv", "xlsx", "pdf"]
FORMATS: tuple[Format, ...] = ("csv", "xlsx", "pdf")


# -- CSV -----------------------------------------------------------------------------------------

def to_csv(report: Report) -> str:
    out = io.StringIO()
    # CRLF as RFC 4180 says: then a cell holding a lone CR or LF is quoted as well
    writer = csv.writer(out, lineterminator="\r\n")
    for name, value in report.header:
        writer.writerow([name, value])
    for section in report.sections:
        writer.writerow([])
        writer.writerow(["section", section.key, section.title])
        writer.writerow([c.name for c in section.columns])
        for row in section.rows:
            writer.writerow([text(v) for v in row])
    return out.getvalue()


def read_csv(data: str) -> tuple[dict[str, str], dict[str, list[dict[str, str]]]]:
    """(header, {section key: rows as dicts}) of a report written by `to_csv`."""
    header: dict[str, str] = {}
    sections: dict[str, list[dict[str, str]]] = {}
    lines = list(csv.reader(io.StringIO(data, newline="")))  # a cell may hold \r or \n
    i = 0
    while i < len(lines) and lines[i]:
        header[lines[i][0]] = lines[i][1]
        i += 1
    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        if lines[i][0] != "section":
            raise ValueError(f"line {i + 1}: expected a section line, got {lines[i]!r}")
        key, names = lines[i][1], lines[i + 1]
        i += 2
        rows = sections[key] = []
        while i < len(lines) and lines[i]:
            rows.append(dict(zip(names, lines[i], strict=True)))
            i += 1
    return header, sections


# -- XLSX ----------------------------------------------------------------------------------------

def _number_format(column: Column, value: Cell) -> str | None:
    if isinstance(value, Money):
        return "#,##0" if value.digits == 0 else "#,##0." + "0" * value.digits
    if column.kind == "count":
        return "#,##0"
    if isinstance(value, datetime):
        return "yyyy-mm-dd hh:mm:ss"
    if isinstance(value, date):
        return "yyyy-mm-dd"
    return None


def _xlsx_value(value: Cell) -> object:
    """Money as its rounded Decimal (openpyxl writes a Decimal's digits as they are: no
    float on the way), times as naive UTC (Excel has no time zones)."""
    if isinstance(value, Money):
        return value.shown
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return value


def _sheet_name(key: str, taken: set[str]) -> str:
    name = "".join(ch for ch in key if ch not in "[]:*?/\\")[:31] or "sheet"
    base, n = name, 2
    while name in taken:
        name = f"{base[:28]}-{n}"
        n += 1
    taken.add(name)
    return name


def write_xlsx(report: Report, path: Path) -> None:
    """One sheet per section, the first with the whole header and the summary. Write-only
    mode (rows streamed to the file): a 40,000-line payout run stays seconds, not minutes."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    bold = Font(bold=True)
    right = Alignment(horizontal="right")
    book = Workbook(write_only=True)
    taken: set[str] = set()
    for index, section in enumerate(report.sections):
        sheet = book.create_sheet(_sheet_name(section.key, taken))

        def cell(value: object, *, strong: bool = False, fmt: str | None = None,
                 align_right: bool = False, sheet: object = sheet) -> WriteOnlyCell:
            out = WriteOnlyCell(sheet, value=value)
            if strong:
                out.font = bold
            if fmt:
                out.number_format = fmt
            if align_right:
                out.alignment = right
            return out

        widths = [len(c.name) + 2 for c in section.columns]
        for row in section.rows:
            for j, value in enumerate(row):
                widths[j] = max(widths[j], len(text(value)) + 2)
        if index == 0:
            widths[0] = max(widths[0], *(len(name) + 2 for name, _ in report.header))
        for j, width in enumerate(widths, start=1):
            sheet.column_dimensions[get_column_letter(j)].width = min(max(width, 8), 60)
        if index == 0:  # the first sheet: the whole header, then the summary
            for name, value in report.header:
                sheet.append([cell(name, strong=True), value])
        else:  # every other sheet names what it belongs to
            sheet.append([f"{report.title} - tenant {report.tenant}, {report.period}, "
                          f"generated {text(report.generated_at)}"])
        sheet.append([])
        sheet.append([cell(section.title, strong=True)])
        sheet.append([cell(c.name, strong=True, align_right=c.numeric) for c in section.columns])
        for row in section.rows:
            sheet.append([cell(_xlsx_value(value), fmt=_number_format(column, value),
                               align_right=column.numeric)
                          for column, value in zip(section.columns, row, strict=True)])
        if section.note:
            sheet.append([])
            sheet.append([section.note])
    book.save(path)


# -- PDF -----------------------------------------------------------------------------------------

def _latin1(value: str) -> str:
    """The PDF's core fonts speak Latin-1: other characters are transliterated (Zoë stays,
    Łukasz -> Lukasz, 東京 -> DongJing) rather than lost."""
    try:
        value.encode("latin-1")
        return value
    except UnicodeEncodeError:
        return "".join(ch if ord(ch) < 256 else anyascii(ch) for ch in value)


def _pdf_text(value: Cell) -> str:
    if isinstance(value, Money):  # thousands separators for readers; the same digits as CSV
        return f"{value.shown:,.{value.digits}f}"
    return _latin1(text(value))


def write_pdf(report: Report, path: Path) -> None:
    """A4 landscape: the header, then each section as a table (numbers right-aligned, never
    cut; the column headings repeat on every page). A text column too long for the page (an
    IB line's formula) is cut with '...' here: the CSV and XLSX keep it whole."""
    from fpdf import FPDF

    pdf = FPDF(orientation="landscape", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=False)
    pdf.set_title(_latin1(f"{report.title} - {report.tenant} - {report.period}"))
    pdf.set_creator("brokerstream")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(0, 8, _latin1(report.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    for name, value in report.header[1:]:
        pdf.cell(0, 5, _latin1(f"{name}: {value}"), new_x="LMARGIN", new_y="NEXT")
    usable = pdf.w - pdf.l_margin - pdf.r_margin
    bottom = pdf.h - 12
    for section in report.sections:
        cells = [[_pdf_text(v) for v in row] for row in section.rows]
        size = 8.0
        pdf.set_font("Helvetica", "", size)
        widths = _pdf_widths(section.columns, cells, pdf.get_string_width, usable)
        while widths is None and size > 4.5:  # too wide: a smaller font before anything is cut
            size -= 0.5
            pdf.set_font("Helvetica", "", size)
            widths = _pdf_widths(section.columns, cells, pdf.get_string_width, usable)
        if widths is None:
            widths = [usable / len(section.columns)] * len(section.columns)
        height = size * 0.5
        aligns = ["R" if c.numeric else "L" for c in section.columns]
        names = [_latin1(c.name) for c in section.columns]

        def headings(names: list[str] = names, widths: list[float] = widths,
                     aligns: list[str] = aligns, size: float = size, height: float = height) -> None:
            pdf.set_font("Helvetica", "B", size)
            for name, width, align in zip(names, widths, aligns, strict=True):
                pdf.cell(width, height + 1, _fit(pdf, name, width), border="B", align=align)
            pdf.ln(height + 1)
            pdf.set_font("Helvetica", "", size)

        if pdf.get_y() + 20 > bottom:
            pdf.add_page()
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(0, 7, _latin1(section.title), new_x="LMARGIN", new_y="NEXT")
        headings()
        for row in cells:
            if pdf.get_y() + height > bottom:
                pdf.add_page()
                headings()
            for value, width, align in zip(row, widths, aligns, strict=True):
                pdf.cell(width, height, value if align == "R" else _fit(pdf, value, width), align=align)
            pdf.ln(height)
        if not cells:
            pdf.set_font("Helvetica", "I", 8)
            pdf.cell(0, 5, "(none)", new_x="LMARGIN", new_y="NEXT")
        if section.note:
            if pdf.get_y() + 10 > bottom:
                pdf.add_page()
            pdf.set_font("Helvetica", "I", 7.5)
            pdf.multi_cell(0, 4, _latin1(section.note), new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))


def _fit(pdf: object, value: str, width: float) -> str:
    """`value` cut with '...' to fit `width` (mm) in the current font."""
    measure = pdf.get_string_width  # type: ignore[attr-defined]
    room = width - 1.6
    if measure(value) <= room:
        return value
    while value and measure(value + "...") > room:
        value = value[:-1]
    return value + "..."


def _pdf_widths(columns: tuple[Column, ...], cells: list[list[str]],
                width_of: Callable[[str], float], usable: float) -> list[float] | None:
    """Column widths: a numeric or short column as wide as its widest value (numbers are
    never cut); long text columns share what is left. None if the rest would be too narrow."""
    pad = 2.5
    natural = []
    for j, column in enumerate(columns):
        widest = max([width_of(column.name) * 1.12,  # headings are bold
                      *(width_of(row[j]) for row in cells)])
        natural.append(widest + pad)
    if sum(natural) <= usable:
        return natural
    fixed = [j for j, c in enumerate(columns) if c.numeric or c.kind == "time" or natural[j] <= 40]
    flexible = [j for j in range(len(columns)) if j not in fixed]
    room = usable - sum(natural[j] for j in fixed)
    if not flexible or room < 18 * len(flexible):
        return None
    out = list(natural)
    # water-filling: the narrowest long columns whole while they fit a fair share, the rest cut
    for i, j in enumerate(sorted(flexible, key=lambda j: natural[j])):
        out[j] = min(natural[j], room / (len(flexible) - i))
        room -= out[j]
    return out


# -- any -----------------------------------------------------------------------------------------

def write(report: Report, fmt: Format, path: Path) -> Path:
    """Write `report` as `fmt` to `path` (its parent directory must exist)."""
    if fmt == "csv":
        path.write_text(to_csv(report), encoding="utf-8", newline="")
    elif fmt == "xlsx":
        write_xlsx(report, path)
    elif fmt == "pdf":
        write_pdf(report, path)
    else:
        raise ValueError(f"unknown format {fmt!r} (csv, xlsx or pdf)")
    return path


__all__ = ["FORMATS", "Format", "Section", "read_csv", "to_csv", "write", "write_pdf", "write_xlsx"]
