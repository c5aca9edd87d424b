"""Opens an OFD file with easyofd (an OFD reader certseal did not write), renders it to PDF and
a PNG of its first page, and prints what a person would see, as JSON: the text PyMuPDF
extracts from the rendering, and how many reddish (seal) pixels fall in a box of the page.

usage: render_ofd.py FILE.ofd OUT_PREFIX [x y w h]   (box in millimetres, top-left origin)
"""
import contextlib
import json
import os
import sys
import tempfile

src, out = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
box = [float(v) for v in sys.argv[3:7]] if len(sys.argv) >= 7 else None
# easyofd writes the embedded fonts into the working folder and logs to stderr.
os.chdir(tempfile.mkdtemp())
from loguru import logger  # noqa: E402

logger.remove()
from easyofd.ofd import OFD  # noqa: E402
import fitz  # noqa: E402  (PyMuPDF, an easyofd dependency)

# easyofd prints as it goes: stdout is kept for the result.
with contextlib.redirect_stdout(sys.stderr):
    ofd = OFD()
    ofd.read(src, fmt="path")
    pdf = ofd.to_pdf()
    page = ofd.to_jpg()[0].convert("RGB")
with open(out + ".pdf", "wb") as f:
    f.write(pdf)
page.save(out + ".png")
text = "".join(p.get_text() for p in fitz.open(stream=pdf, filetype="pdf"))
red = 0
if box:
    sx, sy = page.width / 210.0, page.height / 297.0
    x0, y0 = int(box[0] * sx), int(box[1] * sy)
    x1, y1 = int((box[0] + box[2]) * sx), int((box[1] + box[3]) * sy)
    for y in range(y0, min(y1, page.height)):
        for x in range(x0, min(x1, page.width)):
            r, g, b = page.getpixel((x, y))
            if r > 150 and g < 120 and b < 120:
                red += 1
print(json.dumps({"text": text, "seal_pixels": red, "width": page.width, "height": page.height}))
