"""The bill document as one self-contained HTML page (Jinja2, autoescaped; inline SVG).

Every value reaches the page through Jinja2's autoescaping; only the charts and the QR code
go in as markup, and they are made here: the charts by `document_chart.to_svg`, which escapes
its texts, and the QR code by segno, from the text it encodes.
"""

from __future__ import annotations

import jinja2
import segno

from meterseal.billing.document_chart import to_svg
from meterseal.billing.document_view import DocumentView

QR_ERROR = "m"  # medium error correction: survives a smudged print


def qr_code(text: str) -> segno.QRCode:
    """The QR code printed beside the verification code (it encodes the bill id and code)."""
    return segno.make(text, error=QR_ERROR, micro=False)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("meterseal.billing", "templates"),
        autoescape=True,  # every template, whatever its name: a bill is all HTML
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_html(view: DocumentView) -> str:
    """The page: facts, charges, meters, charts, the verification code, QR code and evidence."""
    qr = qr_code(view.qr_text).svg_inline(scale=4, border=2, svgclass="qr", omitsize=True)
    template = _environment().get_template("bill.html.j2")
    return template.render(
        view=view,
        # (title, SVG): the template escapes the title and marks the SVG `safe` (to_svg escapes)
        charts=[(chart.title, to_svg(chart)) for chart in view.charts],
        qr_svg=qr,
    )
