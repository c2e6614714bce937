"""Checks the geometry of llmc's SVG plots: every text box lies inside the canvas and no two
text boxes overlap. A text line is measured as llmc's layout assumes (0.6 em per character,
0.8 em above the baseline, 0.2 em below); rotate(-90) texts are turned accordingly.
    svg_geometry.py FILE.svg [...]   -> exit 0, or 1 with the offending texts"""
import re
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"


def boxes(path):
    root = ET.parse(path).getroot()
    W, H = float(root.get("width")), float(root.get("height"))
    default_font = float(root.get("font-size", "12"))
    out = []
    for t in root.iter(NS + "text"):
        s = "".join(t.itertext())
        font = float(t.get("font-size", default_font))
        w = len(s) * 0.6 * font
        anchor = t.get("text-anchor", "start")
        transform = t.get("transform")
        if transform:
            m = re.fullmatch(r"translate\(([-\d.]+),([-\d.]+)\) rotate\(-90\)", transform)
            assert m, "unexpected transform %r" % transform
            cx, cy = float(m.group(1)), float(m.group(2))
            # Rotated by -90 degrees: the text runs upwards from (cx, cy); its ascent points left.
            along0 = {"start": 0, "middle": -w / 2, "end": -w}[anchor]
            out.append((s, cx - 0.8 * font, cy - (along0 + w), cx + 0.2 * font, cy - along0))
            continue
        x, y = float(t.get("x")), float(t.get("y"))
        x0 = {"start": x, "middle": x - w / 2, "end": x - w}[anchor]
        out.append((s, x0, y - 0.8 * font, x0 + w, y + 0.2 * font))
    return W, H, out


def problems(path):
    W, H, bs = boxes(path)
    found = []
    for s, x0, y0, x1, y1 in bs:
        if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
            found.append("%s: %r outside the %gx%g canvas (%.1f,%.1f)-(%.1f,%.1f)" % (path, s, W, H, x0, y0, x1, y1))
    for i in range(len(bs)):
        for j in range(i + 1, len(bs)):
            a, b = bs[i], bs[j]
            if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]:
                found.append("%s: %r overlaps %r" % (path, a[0], b[0]))
    return found


if __name__ == "__main__":
    all_found = [p for f in sys.argv[1:] for p in problems(f)]
    for p in all_found:
        print(p)
    sys.exit(1 if all_found else 0)
