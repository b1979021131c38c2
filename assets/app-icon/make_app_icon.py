#!/usr/bin/env python3
"""Draws Pentimento's application icon, made for this project (same licence as the code).

A primed canvas on which an earlier drawing — a hill, a sun — shows through the paint laid
over it (a pentimento), crossed by one fresh brush stroke. One description, written twice:
`pentimento.svg` (the source) and `pentimento-SIZE.png` for the sizes desktops ask for
(supersampled with Pillow, the only dependency).

    python3 assets/app-icon/make_app_icon.py
"""
import os

from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
UNIT = 64  # the drawing's grid
SIZES = [16, 24, 32, 48, 64, 128, 256, 512]
SUPER = 4

BACKGROUND = "#2b2f3a"   # the frame around the canvas
CANVAS = "#efe6d2"       # primed linen
UNDERDRAWING = "#b9ab8f"  # the earlier drawing, showing through
STROKE = "#d9532b"       # the fresh stroke
STROKE_LIGHT = "#f08a4b"

# Shapes on a 64-unit grid: (kind, points or box, colour, width).
SHAPES = [
    ("rounded", (2, 2, 62, 62, 12), BACKGROUND, 0),
    ("rounded", (9, 9, 55, 55, 5), CANVAS, 0),
    # The underdrawing: a hill line and a sun, thin and faded.
    ("line", [(12, 44), (22, 36), (30, 40), (40, 30), (52, 38)], UNDERDRAWING, 2.2),
    ("circle", (40, 20, 6), UNDERDRAWING, 2.2),
    # The fresh stroke across it, with a lighter edge where the brush lifts.
    ("line", [(14, 50), (24, 45), (34, 42), (44, 36), (52, 27)], STROKE, 7.0),
    ("line", [(36, 40), (44, 35), (50, 29)], STROKE_LIGHT, 2.4),
]


def svg():
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {UNIT} {UNIT}" width="512" height="512">']
    for kind, geo, colour, width in SHAPES:
        if kind == "rounded":
            x0, y0, x1, y1, r = geo
            out.append(f'  <rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" rx="{r}" fill="{colour}"/>')
        elif kind == "line":
            pts = " ".join(f"{x},{y}" for x, y in geo)
            out.append(f'  <polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="{width}" '
                       'stroke-linecap="round" stroke-linejoin="round"/>')
        elif kind == "circle":
            cx, cy, r = geo
            out.append(f'  <circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="{colour}" stroke-width="{width}"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def png(size):
    big = size * SUPER
    s = big / UNIT
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    for kind, geo, colour, width in SHAPES:
        if kind == "rounded":
            x0, y0, x1, y1, r = geo
            d.rounded_rectangle([x0 * s, y0 * s, x1 * s, y1 * s], radius=r * s, fill=colour)
        elif kind == "line":
            w = max(1, round(width * s))
            pts = [(x * s, y * s) for x, y in geo]
            d.line(pts, fill=colour, width=w, joint="curve")
            for x, y in pts[:1] + pts[-1:]:
                d.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=colour)
        elif kind == "circle":
            cx, cy, r = geo
            d.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], outline=colour,
                      width=max(1, round(width * s)))
    return img.resize((size, size), Image.LANCZOS)


def main():
    with open(os.path.join(HERE, "pentimento.svg"), "w") as f:
        f.write(svg())
    for size in SIZES:
        png(size).save(os.path.join(HERE, f"pentimento-{size}.png"), optimize=True)


if __name__ == "__main__":
    main()
