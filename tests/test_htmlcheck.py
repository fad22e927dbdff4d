"""The rendered-book checks, on hand-made pages (the browser itself is exercised by `seqlib.book verify-html`)."""

import shutil

import pytest

from seqlib import htmlcheck


def _site(tmp_path):
    (tmp_path / "img.png").write_bytes(b"png")
    (tmp_path / "other.html").write_text('<html><body><main><h1 id="sec">x</h1></main></body></html>')
    return tmp_path / "page.html"


def _ids(path):
    return frozenset({"sec"}) if path.name == "other.html" else frozenset()


def test_a_clean_page_has_no_problems(tmp_path):
    page = _site(tmp_path)
    dom = (
        '<main><img src="img.png"><a href="other.html#sec">ok</a><a href="https://example.org">x</a>'
        '<span class="math"><mjx-container>x</mjx-container></span><pre>$$ in code is fine</pre></main>'
    )
    assert htmlcheck.page_problems(dom, page, tmp_path, _ids) == []


@pytest.mark.parametrize(
    ("dom", "expected"),
    [
        ('<main><img src="missing.png"></main>', "missing image"),
        ('<main><div class="output traceback">ValueError: boom</div></main>', "error output"),
        ('<main><span class="math">\\(x^2\\)</span></main>', "unrendered math"),
        ("<main><p>the cost is $$n^2$$</p></main>", "stray '$$'"),
        ('<main><a href="nowhere.html">x</a></main>', "broken link"),
        ('<main><a href="other.html#nope">x</a></main>', "broken anchor"),
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
