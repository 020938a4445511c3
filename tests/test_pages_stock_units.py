"""The pieces of the course words, without a hub: which course a URL names, the banner's
CSS string (a course title cannot break out of it), the read-only sentence."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hub_ext.stockpages import course_in_url

sys.path.insert(0, str(Path(__file__).parent.parent / "hub_ext" / "spawners" / "singleuser"))

from hub_ext_course_contents import read_only_message
from hub_ext_course_lab import banner_css, banner_text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/user/bob/hist100/", ("bob", "hist100")),
        ("/user/bob/hist100/lab/tree/x.ipynb", ("bob", "hist100")),
        ("/hub/spawn/bob?next=%2Fuser%2Fbob%2Fhist100%2F", ("bob", "hist100")),
        ("/prefix/hub/spawn/bob?next=%2Fprefix%2Fuser%2Fbob%2Fds101%2Flab", ("bob", "ds101")),
        ("/hub/spawn/bob", None),
        ("/user/bob/", None),
        ("", None),
    ],
)
def test_the_course_a_url_names(url, expected):
    assert course_in_url(url) == expected


def test_a_course_title_cannot_end_the_banners_css_string():
    css = banner_css(banner_text("x", 'Evil"; } body { display: none } </style>', "alice", None))
    content = css.split("content: ", 1)[1].split(";\n", 1)[0]
    assert content.startswith('"') and content.endswith('"')
    assert '"' not in content[1:-1] and "}" not in content and "<" not in content
    assert css.count("{") == css.count("}") == 1


def test_the_banner_tells_a_visitor_whose_workspace_it_is():
    assert banner_text("ds101", "Data", "alice", "alice") == "alice's workspace \u00b7 Data (ds101)"
    assert banner_text("ds101", "Data", "alice", "tina").startswith(
        "You are looking at alice's workspace"
    )


def test_the_read_only_sentence_names_the_folder_not_the_server_path():
    assert read_only_message("/materials/a/b.ipynb") == (
        "Cannot save materials/a/b.ipynb: the folder materials/ is read-only (course "
        "materials cannot be changed), so save your own copy outside it (File > Save As)."
    )
    assert "the folder materials/" in read_only_message(
        "materials", "create a file in", folder=True
    )
