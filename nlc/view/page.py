"""The page of `nlc view`: page.html with page.css, page.js and the data inlined. One file, no
network: every script and style is in it, the math is MathML (rendered by the browser)."""
from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

TEMPLATE_FILES = ("page.html", "page.css", "page.js")


def _template(name: str) -> str:
    return resources.files("nlc.view").joinpath(name).read_text(encoding="utf-8")


def data_json(data: dict) -> str:
    """The data as JSON safe inside <script type="application/json">: no `</`, no `<!--`."""
    s = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(data: dict) -> str:
    """The self-contained HTML page for the data of `nlc.view.data.build`."""
    page = _template("page.html")
    parts = {"{{TITLE}}": html.escape(str(data.get("title", "nlc view"))), "{{CSS}}": _template("page.css"),
             "{{JS}}": _template("page.js"), "{{DATA}}": data_json(data)}
    # one pass, so text inside the data or the scripts is never taken for a placeholder
    out, i = [], 0
    while True:
        j = page.find("{{", i)
        if j < 0:
            out.append(page[i:])
            break
        k = page.index("}}", j) + 2
        out.append(page[i:j])
        out.append(parts.get(page[j:k], page[j:k]))
        i = k
    return "".join(out)


def write(data: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
    return path
