"""markup.py: values are escaped in text and attributes unless they are already Html."""

from __future__ import annotations

from tubeserver.markup import Html, el, esc, join, raw


def test_text_and_attributes_are_escaped() -> None:
    evil = "<script>alert('x')</script> & \"quoted\""
    assert el("td", evil, title=evil) == (
        '<td title="&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;">'
        "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;</td>")
    assert esc(7) == "7" and esc(None) == "" and esc(Html("<b>")) == "<b>"


def test_nesting_lists_and_attribute_names() -> None:
    row = el("tr", [el("td", n) for n in (1, "<2>")], data_tube="a/b", class_="x",
             hidden=True, title=None, disabled=False)
    assert row == '<tr data-tube="a/b" class="x" hidden><td>1</td><td>&lt;2&gt;</td></tr>'
    assert el("meta", charset="utf-8") == '<meta charset="utf-8">'
    assert join(["a<", el("b", "c"), None, 3]) == "a&lt;<b>c</b>3"
    assert raw("<!doctype html>") == "<!doctype html>"
    # A plain str that looks like markup is still text.
    assert el("p", "<b>bold</b>") == "<p>&lt;b&gt;bold&lt;/b&gt;</p>"
