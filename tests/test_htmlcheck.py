"""The rendered-book checks, on hand-made pages (the browser itself is exercised by `seqlib.book verify-html`)."""

import shutil

import pytest

from seqlib import htmlcheck


def _site(tmp_path):
    (tmp_path / "img.png").write_bytes(b"png")
    (tmp_path / "other.html").write_text('<html><body><main><h1 id="sec">x</h1></main></body></html>')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text("<html><body><main>sub</main></body></html>")
    (tmp_path / "page.html").write_text('<html><body><main><h1 id="top">page</h1></main></body></html>')
    return tmp_path / "page.html"


def _ids(path):
    return {"other.html": frozenset({"sec"}), "page.html": frozenset({"top"})}.get(path.name, frozenset())


def test_a_clean_page_has_no_problems(tmp_path):
    page = _site(tmp_path)
    dom = (
        '<main><img src="img.png"><a href="other.html#sec">ok</a><a href="https://example.org">x</a>'
        '<span class="math"><mjx-container>x</mjx-container></span><pre>$$ in code is fine</pre></main>'
    )
    assert htmlcheck.page_problems(dom, page, tmp_path, _ids) == []


def test_external_images_code_same_page_anchors_and_folder_links_are_fine(tmp_path):
    page = _site(tmp_path)
    dom = (
        '<main><img src="https://example.org/x.png"><img src="data:image/png;base64,AAAA">'
        "<p>in <code>$$x$$</code> it is code</p>"
        '<a href="#top">up</a><a href="sub/">a folder</a><a href="mailto:a@b.c">mail</a></main>'
    )
    assert htmlcheck.page_problems(dom, page, tmp_path, _ids) == []


def test_only_the_main_content_is_checked(tmp_path):
    """The theme's chrome around ``<main>`` (navigation, header) is not the book's content."""
    page = _site(tmp_path)
    dom = '<html><body><nav><img src="logo.png"><a href="gone.html">x</a></nav><main><p>fine</p></main></body></html>'
    assert htmlcheck.page_problems(dom, page, tmp_path, _ids) == []


@pytest.mark.parametrize(
    ("dom", "expected"),
    [
        ('<main><img src="missing.png"></main>', "missing image"),
        ('<main><div class="output traceback">ValueError: boom</div></main>', "error output"),
        ('<main><div class="output error">NameError: x</div></main>', "error output"),
        ('<main><div class="highlight-ipythontb"><pre>Traceback</pre></div></main>', "error output"),
        ('<main><span class="math">\\(x^2\\)</span></main>', "unrendered math"),
        ("<main><p>the cost is $$n^2$$</p></main>", "stray '$$'"),
        ('<main><a href="nowhere.html">x</a></main>', "broken link"),
        ('<main><a href="other.html#nope">x</a></main>', "broken anchor"),
        ('<main><a href="#nope">x</a></main>', "broken anchor"),
    ],
)
def test_each_problem_is_found(tmp_path, dom, expected):
    page = _site(tmp_path)
    problems = htmlcheck.page_problems(dom, page, tmp_path, _ids)
    assert any(expected in p for p in problems), problems


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium (apt-get install chromium) not here")
def test_chromium_renders_a_served_page(tmp_path):
    (tmp_path / "index.html").write_text("<html><body><main><p id='p'>hello</p></main></body></html>")
    server, base = htmlcheck.serve(tmp_path, None)
    try:
        assert "hello" in htmlcheck.render(base + "index.html", budget_ms=1000)
    finally:
        server.shutdown()


def test_the_server_answers_for_mathjax_locally(tmp_path):
    import urllib.request

    (tmp_path / "page.html").write_text(
        '<html><head><script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script></head></html>'
    )
    mathjax = tmp_path / "mathjax"
    (mathjax / "es5").mkdir(parents=True)
    (mathjax / "es5" / "tex-mml-chtml.js").write_text("/* mathjax */")
    server, base = htmlcheck.serve(tmp_path, mathjax)
    try:
        html = urllib.request.urlopen(base + "page.html", timeout=10).read().decode()
        assert 'src="/__mathjax__/es5/tex-mml-chtml.js"' in html and "cdn.jsdelivr" not in html
        assert urllib.request.urlopen(base + "__mathjax__/es5/tex-mml-chtml.js", timeout=10).read() == b"/* mathjax */"
    finally:
        server.shutdown()


def test_verify_opens_every_page_of_the_book_but_redirects_and_generated_ones(tmp_path, monkeypatch, capsys):
    build = tmp_path / "html"
    pages = {
        "index.html": '<html><head><meta http-equiv="refresh" content="0; url=intro.html"></head></html>',
        "intro.html": "<html><body><main><p>fine</p></main></body></html>",
        "ch/bad.html": '<html><body><main><img src="missing.png"></main></body></html>',
        "genindex.html": '<html><body><main><img src="missing.png"></main></body></html>',
        "search.html": '<html><body><main><img src="missing.png"></main></body></html>',
        "_static/x.html": '<html><body><main><img src="missing.png"></main></body></html>',
        "_sources/y.html": '<html><body><main><img src="missing.png"></main></body></html>',
    }
    for rel, html in pages.items():
        (build / rel).parent.mkdir(parents=True, exist_ok=True)
        (build / rel).write_text(html)
    rendered = []

    def render(url, screenshot=None):
        rel = url.split("/", 3)[3]
        rendered.append(rel)
        return (build / rel).read_text()

    monkeypatch.setattr(htmlcheck, "render", render)
    monkeypatch.setattr(htmlcheck, "mathjax_dir", lambda: None)
    assert htmlcheck.verify(build) == 1  # one page with problems
    assert rendered == ["ch/bad.html", "intro.html"]
    out = capsys.readouterr().out
    assert "FAIL ch/bad.html" in out and "missing image missing.png" in out and "ok   intro.html" in out
    with pytest.raises(FileNotFoundError, match="no built book"):
        htmlcheck.verify(tmp_path / "nothing")
