"""Output safety: spanqa never deletes or overwrites what it did not write."""

import pytest

from spanqa.errors import OutputError
from spanqa.fileutil import MARKER, artifact_kind, atomic_dir, check_output


def _users_dir(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "thesis.tex").write_text("years of work")
    return d


def test_foreign_directory_is_refused_and_kept(tmp_path):
    d = _users_dir(tmp_path)
    with pytest.raises(
        OutputError,
        match=r"^-o .*mine: the directory holds files spanqa did not write; name a new or empty directory for the result$",
    ):
        with atomic_dir(d, "result", overwrite=True) as tmp:
            (tmp / "x").write_text("new")
    assert sorted(p.name for p in d.iterdir()) == ["thesis.tex"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_same_kind_needs_overwrite(tmp_path):
    out = tmp_path / "res"
    with atomic_dir(out, "result") as tmp:
        (tmp / "a").write_text("1")
    assert artifact_kind(out) == "result" and (out / MARKER).is_file()
    with pytest.raises(OutputError, match="a result is already there; pass --overwrite to replace it"):
        check_output(out, "result")
    with pytest.raises(OutputError, match="holds a spanqa result; name a new or empty directory for the features"):
        check_output(out, "features", overwrite=True)
    with atomic_dir(out, "result", overwrite=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b"]


def test_empty_directory_is_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "empty", "result") == tmp_path / "empty"


@pytest.mark.parametrize("where", [".", "~"])
def test_cwd_and_home_refused(where, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    with pytest.raises(OutputError, match="refusing to write into"):
        check_output(where, "result")


def test_output_that_is_an_input_or_a_file(tmp_path):
    data = tmp_path / "h3.json"
    data.write_text("{}")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        check_output(data, "result")
    with pytest.raises(OutputError, match="is \\(or holds\\) the input"):
        check_output(tmp_path, "result", inputs=(data,))
    assert data.read_text() == "{}"


def test_failure_leaves_nothing(tmp_path):
    out = tmp_path / "res"
    with pytest.raises(OSError):
        with atomic_dir(out, "result") as tmp:
            (tmp / "half").write_text("x")
            raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []
