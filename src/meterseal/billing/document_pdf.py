"""The bill document as a PDF (fpdf2): the HTML page's view, with its charts as vector shapes.

fpdf2 is pure Python and needs no system library. The PDF uses the standard Helvetica and
Courier fonts (nothing embedded, so the text stays searchable and the file small); they
cover Latin-1 only, so text outside it is printed transliterated ('Ł' as '?', 'é' kept).
The file's dates are the bill's issue time: the same bill gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Sequence

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from meterseal.billing.document_chart import AXIS, GRID, LEFT, RIGHT, BarChart
from meterseal.billing.document_html import qr_code
from meterseal.billing.document_view import DocumentView

WIDTH = 180.0  # mm between the margins of an A4 page
MARGIN = 15.0
LINE = 5.0  # mm per line of body text
QR_SIZE = 32.0  # mm


def _text(value: str) -> str:
    """`value` as the core fonts can print it (Latin-1), transliterated where it is not."""
    return "".join(map(_latin1, value))


def _latin1(c: str) -> str:
    """One character in Latin-1: itself, its base letter ('Ő' -> 'O') or '?'."""
    if ord(c) < 256:
        return c
    base = "".join(b for b in unicodedata.normalize("NFKD", c) if not unicodedata.combining(b))
    return base if base and all(ord(b) < 256 for b in base) else "?"


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


class _Page(FPDF):
    """An A4 page with the bill's helpers: headings and tables of fixed column widths."""

    def heading(self, text: str) -> None:
        self.ln(3)
        self.set_font("Helvetica", "B", 11)
        self.cell(WIDTH, 7, _text(text), border="B", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1)

    def row(
        self,
        cells: Sequence[str],
        widths: Sequence[float],
        *,
        bold: bool = False,
        right_from: int = 1,
        font: str = "Helvetica",
        size: float = 9,
    ) -> None:
        self.set_font(font, "B" if bold else "", size)
        for i, (value, width) in enumerate(zip(cells, widths, strict=True)):
            self.cell(width, LINE, _text(value), align="R" if i >= right_from else "L")
        self.ln(LINE)

    def chart(self, chart: BarChart) -> None:
        """Draw a laid-out chart at the current position, the page's width across."""
        scale = WIDTH / chart.width  # mm per chart point
        height = chart.height * scale
        if self.get_y() + height > self.page_break_trigger:
            self.add_page()
        x0, y0 = self.l_margin, self.get_y()
        self.set_font("Helvetica", "B", 9)
        self.cell(WIDTH, LINE, _text(chart.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        y0 = self.get_y()
        self.set_line_width(0.1)
        self.set_draw_color(*_rgb(GRID))
        for y in chart.grid:
            self.line(
                x0 + LEFT * scale,
                y0 + y * scale,
                x0 + (chart.width - RIGHT) * scale,
                y0 + y * scale,
            )
        for box in chart.boxes:
            self.set_fill_color(*_rgb(box.colour))
            self.rect(
                x0 + box.x * scale,
                y0 + box.y * scale,
                box.width * scale,
                box.height * scale,
                style="F",
            )
        self.set_font("Helvetica", "", 7)
        self.set_text_color(*_rgb(AXIS))
        for label in chart.labels:
            text = _text(label.text)
            shift = {"start": 0.0, "middle": 0.5, "end": 1.0}[label.anchor]
            self.text(
                x0 + label.x * scale - shift * self.get_string_width(text),
                y0 + label.y * scale,
                text,
            )
        x = x0 + LEFT * scale
        for colour, meaning in chart.legend:
            self.set_fill_color(*_rgb(colour))
            self.rect(x, y0 + 6 * scale, 10 * scale, 10 * scale, style="F")
            self.text(x + 14 * scale, y0 + 15 * scale, _text(meaning))
            x += (20 + 6 * len(meaning)) * scale
        self.set_text_color(0, 0, 0)
        self.set_y(y0 + height)

    def qr(self, text: str, x: float, y: float) -> None:
        """The QR code of `text`, QR_SIZE mm wide, dark modules as filled squares."""
        matrix = qr_code(text).matrix
        module = QR_SIZE / len(matrix)
        self.set_fill_color(0, 0, 0)
        for r, modules in enumerate(matrix):
            for c, dark in enumerate(modules):
                if dark:
                    self.rect(x + c * module, y + r * module, module, module, style="F")


def render_pdf(view: DocumentView, *, issued_at: int) -> bytes:
    """The PDF's bytes (A4): the same facts, tables, charts and verification as the HTML."""
    pdf = _Page(orientation="P", unit="mm", format="A4")
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.set_auto_page_break(auto=True, margin=MARGIN)
    pdf.set_creation_date(dt.datetime.fromtimestamp(issued_at, dt.UTC))
    pdf.set_title(_text(view.title))
    pdf.set_creator("meterseal bill-doc")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(WIDTH, 8, _text(view.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    for label, value in view.facts:
        pdf.set_font("Helvetica", "B", 9)
        pdf.cell(38, LINE, _text(label))
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(WIDTH - 38, LINE, _text(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    pdf.heading("Charges")
    widths: tuple[float, ...] = (77.0, 30.0, 38.0, 35.0)
    pdf.row(("line", "energy (kWh)", "unit price", "amount"), widths, bold=True)
    for c in view.charges:
        pdf.row((c.label, c.energy, c.unit_price, c.amount), widths)
    pdf.row(("Total", view.energy.removesuffix(" kWh"), "", view.total), widths, bold=True)
    if view.estimated_note:
        pdf.ln(1)
        pdf.set_fill_color(255, 243, 230)
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(
            WIDTH, LINE, _text(view.estimated_note), fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )

    pdf.heading("Meters")
    widths = (48.0, 28.0, 28.0, 28.0, 28.0, 20.0)
    pdf.row(
        ("meter", "readings", "measured (kWh)", "estimated (kWh)", "estimated share", "gaps"),
        widths,
        bold=True,
    )
    for m in view.meters:
        pdf.row((m.meter, m.readings, m.measured, m.estimated, m.estimated_share, m.gaps), widths)

    if pdf.get_y() + QR_SIZE + 40 > pdf.page_break_trigger:
        pdf.add_page()
    pdf.heading("Verification")
    top = pdf.get_y()
    pdf.qr(view.qr_text, MARGIN, top)
    text_x = MARGIN + QR_SIZE + 5
    pdf.set_xy(text_x, top)
    pdf.set_font("Helvetica", "", 9)
    pdf.cell(32, 7, "Verification code:")
    pdf.set_font("Courier", "B", 13)
    pdf.cell(0, 7, view.code, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", "", 9)
    for text in (f"Audit: {view.audit}", *(f"{i}. {s}" for i, s in enumerate(view.checks, 1))):
        pdf.set_x(text_x)
        pdf.multi_cell(WIDTH - QR_SIZE - 5, LINE, _text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(pdf.get_y(), top + QR_SIZE) + 3)
    for label, value in view.evidence:
        pdf.set_font("Helvetica", "B", 7)
        pdf.cell(32, 4, _text(label))
        pdf.set_font("Courier", "", 7)
        pdf.cell(0, 4, _text(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    if view.charts:
        pdf.heading("Consumption")
    for chart in view.charts:
        pdf.chart(chart)
        pdf.ln(2)
    return bytes(pdf.output())
