"""Inline SVG charts for the dashboard: lines over time, bars against a line, two histograms side by side.

Only presentation attributes (fill, stroke): the pages' policy allows no inline style. Every text is escaped.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from core.monitoring.measures import VersionCalls

# Colours that stay apart for colour-blind readers (Okabe-Ito).
SERIES_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
LINE_COLOUR = "#C0392B"
TRAINING_COLOUR = "#9AA5B1"
FONT = 'font-family="system-ui, sans-serif"'
LEGEND_ITEM_WIDTH, LEGEND_ROW_HEIGHT = 165, 16
BAND = "#E4E7EB"  # a range drawn as a band (training's range of the positive share)
INK = "#1F2933"


@dataclass(frozen=True)
class Series:
    """One named line of a chart."""

    name: str
    values: Sequence[float | None]


def _number(value: float) -> str:
    return f"{value:.1f}"


def element(tag: str, text: str = "", /, **attributes: object) -> str:
    """Return one SVG element; attribute names take '-' for '_' (font_size: font-size), floats one decimal."""
    rendered = " ".join(
        f'{name.rstrip("_").replace("_", "-")}="{escape(_number(v) if isinstance(v, float) else v)}"'
        for name, v in attributes.items()
    )
    if tag == "text":
        rendered += f" {FONT}"
    return f"<{tag} {rendered}>{escape(text)}</{tag}>" if text else f"<{tag} {rendered}/>"


def _svg_open(width: int, height: int) -> str:
    return f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg">'


def _limit_line(x0: float, x1: float, y: float, label: str) -> str:
    return element(
        "line", x1=x0, y1=y, x2=x1, y2=y, stroke=LINE_COLOUR, stroke_width=1.5, stroke_dasharray="6 4"
    ) + element("text", label, x=x1 - 2, y=y - 4, text_anchor="end", font_size=11, fill=LINE_COLOUR)


def line_chart(
    series: Sequence[Series],
    x_labels: Sequence[str],
    *,
    line_at: float | None = None,
    line_label: str = "",
    y_floor: float = 0.0,
    width: int = 560,
    height: int = 180,
    unit: str = "",
) -> Markup:
    """Return lines over x_labels (None leaves a gap), with an optional horizontal limit line and a legend."""
    left, right, top, bottom = 44, 8, 12, 34
    values = [v for s in series for v in s.values if v is not None]
    y_max = max([*values, line_at or 0.0, y_floor, 1e-9]) * 1.15
    plot_w, plot_h = width - left - right, height - top - bottom
    count = max(len(x_labels), 2)

    def x(i: int) -> float:
        return left + plot_w * i / (count - 1)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / y_max)

    legend_rows = -(-len(series) // max((width - left) // LEGEND_ITEM_WIDTH, 1))
    parts = [_svg_open(width, height + LEGEND_ROW_HEIGHT * max(legend_rows - 1, 0))]
    for fraction in (0, 0.5, 1):
        level = y_max * fraction / 1.15
        parts.append(element("line", x1=left, x2=width - right, y1=y(level), y2=y(level), stroke="#E4E7EB"))
        axis = {"text_anchor": "end", "font_size": 10, "fill": "#52606D"}
        parts.append(element("text", f"{_short(level)}{unit}", x=left - 4, y=y(level) + 4, **axis))
    last = len(x_labels) - 1
    for i in sorted({0, last // 2, last}) if x_labels else []:
        # The first and last labels lean inwards, so that neither is cut at the edge.
        anchor = "start" if i == 0 else "end" if i == last else "middle"
        parts.append(
            element(
                "text", x_labels[i], x=x(i), y=height - 18, text_anchor=anchor, font_size=10, fill="#52606D"
            )
        )
    per_row = max((width - left) // LEGEND_ITEM_WIDTH, 1)
    for n, line in enumerate(series):
        colour = SERIES_COLOURS[n % len(SERIES_COLOURS)]
        # Past the palette, lines repeat its colours dashed.
        dashes = {} if n < len(SERIES_COLOURS) else {"stroke_dasharray": "5 3"}
        points = [(x(i), y(v)) for i, v in enumerate(line.values) if v is not None]
        if len(points) == 1:
            parts.append(element("circle", cx=points[0][0], cy=points[0][1], r=3, fill=colour))
        elif points:
            path = " ".join(f"{_number(px)},{_number(py)}" for px, py in points)
            parts.append(
                element("polyline", points=path, fill="none", stroke=colour, stroke_width=2, **dashes)
            )
        legend_x = left + LEGEND_ITEM_WIDTH * (n % per_row)
        legend_y = height - 6 + LEGEND_ROW_HEIGHT * (n // per_row)
        key = {"x1": legend_x, "x2": legend_x + 12, "y1": legend_y - 4, "y2": legend_y - 4}
        parts.append(element("line", **key, stroke=colour, stroke_width=3, **dashes))
        parts.append(element("text", line.name, x=legend_x + 16, y=legend_y, font_size=11, fill="#1F2933"))
    if line_at is not None:
        parts.append(_limit_line(left, width - right, y(line_at), line_label))
    parts.append("</svg>")
    return Markup("".join(parts))


def bars_against_line(
    rows: Sequence[tuple[str, float | None]],
    *,
    line_at: float,
    line_label: str,
    missing: str,
    bad_below: bool = False,
    judged: Collection[str] | None = None,
    unit: str = "",
    width: int = 560,
    row_height: int = 22,
) -> Markup:
    """Return one horizontal bar per row (None: the row says missing), with a vertical limit line.

    A bar on the bad side of the line (above it; below it with bad_below) is drawn red, among the rows judged
    (all by default); each bar carries its name and value as data attributes.
    """
    left, right, top = 170, 60, 18
    height = top + row_height * len(rows) + 6
    values = [v for _, v in rows if v is not None]
    x_max = max([*values, line_at * 1.5])
    plot_w = width - left - right

    def x(v: float) -> float:
        return left + plot_w * min(v, x_max) / x_max

    label = {"font_size": 11, "fill": "#1F2933"}
    parts = [_svg_open(width, height)]
    for n, (name, value) in enumerate(rows):
        y = top + row_height * n
        parts.append(
            element("text", name, x=left - 6, y=y + 14, text_anchor="end", font_size=12, fill="#1F2933")
        )
        if value is None:
            parts.append(element("text", missing, x=left + 4, y=y + 14, font_size=11, fill="#7B8794"))
            continue
        bad = (value < line_at if bad_below else value > line_at) and (judged is None or name in judged)
        colour = LINE_COLOUR if bad else SERIES_COLOURS[0]
        bar = {"x": left, "y": y + 4, "width": max(x(value) - left, 1.0), "height": row_height - 8}
        parts.append(element("rect", **bar, fill=colour, data_name=name, data_value=f"{value:.4f}"))
        parts.append(element("text", f"{value:.2f}{unit}", x=x(value) + 4, y=y + 15, **label))
    line_x = x(line_at)
    dashes = {"stroke": LINE_COLOUR, "stroke_width": 1.5, "stroke_dasharray": "6 4"}
    parts.append(element("line", x1=line_x, x2=line_x, y1=top - 4, y2=height - 2, **dashes))
    parts.append(
        element("text", line_label, x=line_x, y=top - 6, text_anchor="middle", font_size=11, fill=LINE_COLOUR)
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def paired_histogram(
    labels: Sequence[str],
    training: Sequence[float],
    served: Sequence[float],
    *,
    width: int = 560,
    height: int = 170,
) -> Markup:
    """Return training and served shares of each bin as two bars side by side (training grey)."""
    left, right, top, bottom = 36, 8, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    count = max(len(labels), 1)
    y_max = max([*training, *served, 1e-9]) * 1.1
    slot = plot_w / count
    parts = [_svg_open(width, height)]
    for n in range(len(labels)):
        for k, (shares, colour) in enumerate(((training, TRAINING_COLOUR), (served, SERIES_COLOURS[0]))):
            if n < len(shares):
                bar_h = plot_h * shares[n] / y_max
                x = left + slot * n + slot * (0.1 + 0.4 * k)
                parts.append(
                    element("rect", x=x, y=top + plot_h - bar_h, width=slot * 0.38, height=bar_h, fill=colour)
                )
    for n in sorted({0, len(labels) // 2, len(labels) - 1}) if labels else []:
        axis = {"text_anchor": "middle", "font_size": 10, "fill": "#52606D"}
        parts.append(element("text", labels[n], x=left + slot * (n + 0.5), y=height - 20, **axis))
    for offset, (name, colour) in enumerate((("training", TRAINING_COLOUR), ("served", SERIES_COLOURS[0]))):
        parts.append(element("rect", x=left + 90 * offset, y=height - 10, width=10, height=4, fill=colour))
        parts.append(
            element("text", name, x=left + 90 * offset + 14, y=height - 5, font_size=11, fill="#1F2933")
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _short(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    if value >= 10 or value == 0:
        return f"{value:.0f}"
    return f"{value:.2g}"


def positive_share_chart(
    calls: Sequence[VersionCalls],
    share_range: tuple[float, float] | None,
    *,
    min_predictions: int,
    judged_version: str | None = None,
    width: int = 560,
    row_height: int = 22,
) -> Markup:
    """Return each version's share of positive calls as a bar, training's range as two lines around a band.

    The range is judged_version's (the serving one): its share outside it is red once it rests on
    min_predictions; under that it says so. Other versions are drawn, not judged.
    """
    # Room right of the bars for the share, and for the note of one that rests on too few predictions.
    left, top = 170, 18
    right = 60 if all(c.predictions >= min_predictions for c in calls) else 230
    height = top + row_height * len(calls) + 6
    shares = [c.positive_share for c in calls] + list(share_range or ())
    x_max: float = max([*shares, 0.01]) * 1.25

    def x(share: float) -> float:
        return left + (width - left - right) * share / x_max

    parts = [_svg_open(width, height)]
    if share_range:
        low, high = share_range
        parts.append(
            element("rect", x=x(low), y=top - 2, width=x(high) - x(low), height=height - top, fill=BAND)
        )
        dashes = {"stroke": LINE_COLOUR, "stroke_width": 1.5, "stroke_dasharray": "6 4"}
        for bound, anchor in ((low, "end"), (high, "start")):
            parts.append(element("line", x1=x(bound), x2=x(bound), y1=top - 4, y2=height - 2, **dashes))
            bound_label = {"text_anchor": anchor, "font_size": 11, "fill": LINE_COLOUR}
            parts.append(element("text", f"{100 * bound:.1f} %", x=x(bound), y=top - 6, **bound_label))
    for n, served in enumerate(calls):
        y = top + row_height * n
        parts.append(
            element(
                "text", served.model_version, x=left - 6, y=y + 14, text_anchor="end", font_size=12, fill=INK
            )
        )
        enough = served.predictions >= min_predictions
        outside = (
            served.model_version == judged_version
            and share_range is not None
            and not share_range[0] <= served.positive_share <= share_range[1]
        )
        colour = LINE_COLOUR if enough and outside else SERIES_COLOURS[0] if enough else TRAINING_COLOUR
        end = x(served.positive_share)
        bar = {"x": left, "y": y + 4, "width": max(end - left, 1.0), "height": row_height - 8, "fill": colour}
        name, value = f"{served.model_version} positive share", f"{served.positive_share:.4f}"
        parts.append(element("rect", **bar, data_name=name, data_value=value))
        caption = f"{100 * served.positive_share:.1f} %"
        if not enough:
            caption += f" (fewer than {min_predictions} predictions)"
        parts.append(element("text", caption, x=end + 4, y=y + 15, font_size=11, fill=INK))
    parts.append("</svg>")
    return Markup("".join(parts))
