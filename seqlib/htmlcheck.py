"""Check the rendered book as a reader sees it: every page opened in headless Chromium.

    python -m seqlib.book verify-html [--build-dir _build/html] [--screenshots DIR PAGE ...]

Serves ``_build/html`` on localhost, loads every page in headless Chromium (Debian's ``chromium`` package),
lets its scripts run, and fails on

* a missing image (an ``<img>`` whose file is not in the build),
* an error output of a notebook cell (a traceback rendered in the page),
* unrendered math (a math element that MathJax did not typeset, or a stray ``$$`` in the text),
* a broken internal link (a link to a page or an anchor that does not exist).

Sphinx loads MathJax from a CDN. So that the check runs offline too, the local server answers for the CDN
address with a copy of MathJax 3 taken from the npm registry (``npm pack mathjax@3``, cached).
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

MATHJAX_CDN = re.compile(r"https://cdn\.jsdelivr\.net/npm/mathjax@3/es5/")
LOCAL_MATHJAX = "/__mathjax__/es5/"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def mathjax_dir(cache: Path | None = None) -> Path:
    """A local MathJax 3 (``es5/``), unpacked from the npm package on first use."""
    cache = cache or Path.home() / ".cache" / "seqlib" / "mathjax"
    es5 = cache / "package" / "es5"
    if (es5 / "tex-mml-chtml.js").exists():
        return es5.parent
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed once to fetch MathJax for the offline math check (apt-get install npm)")
    cache.mkdir(parents=True, exist_ok=True)
    out = (
        subprocess.run(
            [npm, "pack", "mathjax@3", "--pack-destination", str(cache)], capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    with tarfile.open(cache / out) as tar:
        tar.extractall(cache, filter="data")
    return es5.parent


class _Handler(http.server.SimpleHTTPRequestHandler):
    mathjax: Path | None = None

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = urlparse(self.path).path
        if self.mathjax is not None and path.startswith(LOCAL_MATHJAX):
            f = self.mathjax / "es5" / path[len(LOCAL_MATHJAX) :]
            return self._send(f.read_bytes(), "application/javascript") if f.is_file() else self.send_error(404)
        if path.endswith("/") or path.endswith(".html"):
            f = Path(self.translate_path(path))
            f = f / "index.html" if f.is_dir() else f
            if f.is_file():
                html = MATHJAX_CDN.sub(LOCAL_MATHJAX, f.read_text(encoding="utf-8"))
                return self._send(html.encode(), "text/html; charset=utf-8")
        return super().do_GET()

    def _send(self, body: bytes, ctype: str):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(root: Path, mathjax: Path | None):
    """Start a localhost server for ``root`` in a thread; returns (server, base URL)."""
    handler = type("Handler", (_Handler,), {"mathjax": mathjax})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise RuntimeError("headless Chromium is needed: apt-get install chromium")


def render(url: str, budget_ms: int = 8000, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``), optionally with a screenshot."""
    with tempfile.TemporaryDirectory() as profile:
        flags = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}"]
        if screenshot is not None:
            subprocess.run(
                [*flags, "--window-size=1280,1800", f"--screenshot={screenshot}", url],
                capture_output=True,
                timeout=120,
                check=False,
            )
        out = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False)
    if not out.stdout.strip():
        raise RuntimeError(f"Chromium rendered nothing for {url}: {out.stderr[-500:]}")
    return out.stdout


def page_problems(dom: str, page: Path, root: Path, ids_of) -> list[str]:
    """What is wrong with one rendered page (``dom``), whose file is ``page`` under ``root``."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(dom, "html.parser")
    main = soup.find("main") or soup
    problems = []
    for img in main.find_all("img"):
        src = img.get("src", "")
        if src.startswith("data:") or urlparse(src).scheme in ("http", "https"):
            continue
        target = (page.parent / unquote(urlparse(src).path)).resolve()
        if not target.is_file():
            problems.append(f"missing image {src}")
    for tb in main.select(".output.traceback, .output.error, div.highlight-ipythontb"):
        first = tb.get_text(" ", strip=True)[:120]
        problems.append(f"error output: {first}")
    for m in main.select(".math"):
        if m.find("mjx-container") is None:
            problems.append(f"unrendered math: {m.get_text(strip=True)[:80]}")
    text = " ".join(t for t in main.find_all(string=True) if t.parent.name not in ("code", "pre", "script", "style"))
    if "$$" in text:
        problems.append("a stray '$$' in the text (math that was not parsed)")
    for a in main.find_all("a", href=True):
        href = a["href"]
        parsed = urlparse(href)
        if parsed.scheme or href.startswith(("mailto:", "javascript:")):
            continue
        target = page if not parsed.path else (page.parent / unquote(parsed.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"broken link {href}")
        elif parsed.fragment and target.suffix == ".html" and parsed.fragment not in ids_of(target):
            problems.append(f"broken anchor {href}")
    return problems


def verify(build_dir: Path, screenshots: Path | None = None, shot_pages: list[str] | None = None) -> int:
    """Open every page of the built book; print its problems; return how many pages have some."""
    from bs4 import BeautifulSoup

    root = Path(build_dir).resolve()
    if not (root / "index.html").exists():
        raise FileNotFoundError(f"no built book in {root}: run `jupyter-book build .` first")
    pages = sorted(
        p
        for p in root.rglob("*.html")
        if "_static" not in p.parts and "_sources" not in p.parts and p.name not in ("genindex.html", "search.html")
    )

    @functools.cache
    def ids_of(path: Path) -> frozenset[str]:
        soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
        return frozenset(t["id"] for t in soup.find_all(id=True))

    server, base = serve(root, mathjax_dir())
    bad = 0
    try:
        if screenshots is not None:
            screenshots.mkdir(parents=True, exist_ok=True)
        for page in pages:
            rel = page.relative_to(root).as_posix()
            shot = None
            if screenshots is not None and rel in (shot_pages or []):
                shot = screenshots / (rel.replace("/", "_").removesuffix(".html") + ".png")
            if 'http-equiv="refresh"' in page.read_text(encoding="utf-8").lower():
                continue  # a redirect page (index.html -> the root page)
            dom = render(urljoin(base, rel), screenshot=shot)
            problems = page_problems(dom, page, root, ids_of)
            bad += bool(problems)
            print(f"{'FAIL' if problems else 'ok  '} {rel}" + (f"  ({shot.name})" if shot else ""))
            for p in problems:
                print(f"       {p}")
    finally:
        server.shutdown()
    print(f"{len(pages)} pages opened in headless Chromium, {bad} with problems")
    return bad
