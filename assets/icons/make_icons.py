#!/usr/bin/env python3
"""Draws Pentimento's toolbar icons, written for this project (same licence as the code).

Each icon is a few strokes on a 24-unit grid. This script writes it twice from the one
description: `NAME.svg` (the source, `currentColor` strokes) and `NAME.png` (48 px, white on
transparent, supersampled; the app tints it to the theme's text colour). Needs Pillow only.

    python3 assets/icons/make_icons.py
"""
import math
import os

from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
GRID = 24
PNG = 48
SUPER = 8
WIDTH = 2.0  # stroke width in grid units


def arc(cx, cy, r, a0, a1, n=24):
    """Points along a circle from angle a0 to a1 (degrees, 0 = east, clockwise on screen)."""
    return [
        (cx + r * math.cos(math.radians(a0 + (a1 - a0) * i / n)),
         cy + r * math.sin(math.radians(a0 + (a1 - a0) * i / n)))
        for i in range(n + 1)
    ]


def dotted_circle(cx, cy, r, n=10, dot=0.9):
    return [("disc", (cx + r * math.cos(2 * math.pi * i / n), cy + r * math.sin(2 * math.pi * i / n)), dot)
            for i in range(n)]


def brush(dx=0.0, dy=0.0):
    s = lambda pts: [(x + dx, y + dy) for x, y in pts]
    return [
        ("line", s([(20.5, 3.5), (13.5, 10.5)])),
        ("fill", s([(12.0, 9.5), (14.5, 12.0), (10.0, 18.0), (6.5, 19.5), (4.5, 19.5), (5.5, 15.5)])),
    ]


def eraser(dx=0.0, dy=0.0):
    s = lambda pts: [(x + dx, y + dy) for x, y in pts]
    return [
        ("poly", s([(13, 4), (20, 11), (12, 19), (8, 19), (5, 16), (5, 12)])),
        ("fill", s([(5, 12), (9, 8), (16, 15), (12, 19), (8, 19), (5, 16)])),
        ("line", s([(12, 20), (20, 20)])),
    ]


def arrow_head(tip, direction, size=4.0):
    (x, y), a = tip, math.radians(direction)
    left = (x - size * math.cos(a - 0.55), y - size * math.sin(a - 0.55))
    right = (x - size * math.cos(a + 0.55), y - size * math.sin(a + 0.55))
    return ("fill", [left, (x, y), right])


def eye():
    top = arc(12, 20, 13, 215, 325)
    bottom = arc(12, 4, 13, 35, 145)
    return [("poly", top + bottom[1:-1]), ("disc", (12, 12), 2.8)]


ICONS = {
    "mask_brush": brush(1, 0) + dotted_circle(6.5, 17.5, 5.2),
    "mask_eraser": eraser() + dotted_circle(7.5, 16.5, 6.0),
    "colour_brush": brush(),
    "layer_eraser": eraser(),
    "fill_mask": [("fill", [(4, 4), (20, 4), (20, 20), (4, 20)])],
    "clear_mask": [("poly", [(4, 4), (20, 4), (20, 20), (4, 20)]), ("line", [(4, 20), (20, 4)])],
    "invert_mask": [("poly", [(4, 4), (20, 4), (20, 20), (4, 20)]), ("fill", [(4, 20), (20, 4), (20, 20)])],
    "undo": [("line", arc(13, 13, 7, 180, 450)), arrow_head((6.0, 13.0), 90)],
    "redo": [("line", arc(11, 13, 7, 90, 360)), arrow_head((18.0, 13.0), 270)],
    "fit": [("line", [(4, 9), (4, 4), (9, 4)]), ("line", [(15, 4), (20, 4), (20, 9)]),
            ("line", [(20, 15), (20, 20), (15, 20)]), ("line", [(9, 20), (4, 20), (4, 15)])],
    "one_to_one": [("line", [(5, 8), (7.5, 5.5), (7.5, 19)]), ("disc", (12, 9), 1.3), ("disc", (12, 15.5), 1.3),
                   ("line", [(16, 8), (18.5, 5.5), (18.5, 19)])],
    "eye": eye(),
    "eye_off": eye() + [("line", [(4, 20), (20, 4)])],
    "layer_add": [("poly", [(10, 4), (18, 8), (10, 12), (2, 8)]), ("line", [(2, 12.5), (10, 16.5), (12, 15.5)]),
                  ("line", [(18, 13), (18, 21)]), ("line", [(14, 17), (22, 17)])],
    "layer_up": [("line", [(12, 20), (12, 5)]), arrow_head((12, 4), 270, 6)],
    "layer_down": [("line", [(12, 4), (12, 19)]), arrow_head((12, 20), 90, 6)],
    "merge_down": [("line", [(6, 4), (12, 11), (18, 4)]), ("line", [(12, 11), (12, 15)]),
                   arrow_head((12, 16.5), 90, 4.5), ("line", [(4, 20.5), (20, 20.5)])],
    "delete": [("line", [(4, 6.5), (20, 6.5)]), ("line", [(9.5, 6.5), (10, 3.5), (14, 3.5), (14.5, 6.5)]),
               ("poly", [(6, 6.5), (7.5, 21), (16.5, 21), (18, 6.5)]), ("line", [(10, 10), (10, 17.5)]),
               ("line", [(14, 10), (14, 17.5)])],
}


def fmt(v):
    return f"{v:.2f}".rstrip("0").rstrip(".")


def svg(shapes):
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {GRID} {GRID}" width="{GRID}" height="{GRID}" '
           f'fill="none" stroke="currentColor" stroke-width="{WIDTH}" stroke-linecap="round" stroke-linejoin="round">']
    for kind, *args in shapes:
        if kind in ("line", "poly", "fill"):
            pts = " ".join(f"{fmt(x)},{fmt(y)}" for x, y in args[0])
            tag = "polyline" if kind == "line" else "polygon"
            extra = ' fill="currentColor"' if kind == "fill" else ""
            out.append(f'  <{tag} points="{pts}"{extra}/>')
        elif kind == "disc":
            (x, y), r = args
            out.append(f'  <circle cx="{fmt(x)}" cy="{fmt(y)}" r="{fmt(r)}" fill="currentColor" stroke="none"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def png(shapes):
    size = PNG * SUPER
    k = size / GRID
    img = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(img)
    w = round(WIDTH * k)

    def cap(p):
        d.ellipse([p[0] - w / 2, p[1] - w / 2, p[0] + w / 2, p[1] + w / 2], fill=255)

    for kind, *args in shapes:
        if kind in ("line", "poly", "fill"):
            pts = [(x * k, y * k) for x, y in args[0]]
            if kind == "fill":
                d.polygon(pts, fill=255)
            if kind == "poly" or kind == "fill":
                pts = pts + [pts[0]]
            d.line(pts, fill=255, width=w, joint="curve")
            for p in pts:
                cap(p)
        elif kind == "disc":
            (x, y), r = args
            d.ellipse([(x - r) * k, (y - r) * k, (x + r) * k, (y + r) * k], fill=255)
    alpha = img.resize((PNG, PNG), Image.LANCZOS)
    white = Image.new("RGBA", (PNG, PNG), (255, 255, 255, 0))
    white.putalpha(alpha)
    return white


if __name__ == "__main__":
    for name, shapes in ICONS.items():
        with open(os.path.join(HERE, f"{name}.svg"), "w") as f:
            f.write(svg(shapes))
        png(shapes).save(os.path.join(HERE, f"{name}.png"), optimize=True)
    print(f"{len(ICONS)} icons in {HERE}")
