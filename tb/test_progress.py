"""scripts/progress.py: bars only on a terminal, never in CI; the wrapped work is unchanged."""

import pytest

from scripts import progress


@pytest.mark.parametrize("setting, ci, want", [("1", "true", True), ("0", "", False),
                                                ("", "true", False)])
def test_enabled(monkeypatch, setting, ci, want):
    monkeypatch.setenv("SPARTA_PROGRESS", setting)
    monkeypatch.setenv("CI", ci)
    assert progress.enabled() is want


@pytest.mark.parametrize("setting", ["0", "1"])
def test_bars_pass_everything_through(monkeypatch, capsys, setting):
    monkeypatch.setenv("SPARTA_PROGRESS", setting)
    assert list(progress.track(iter(range(5)), "items", total=5)) == list(range(5))
    assert list(progress.track(["a", "b"], "names")) == ["a", "b"]
    seen = []
    with progress.bar("steps") as advance:
        for step in range(1, 4):
            advance(step, 3)
            seen.append(step)
    with progress.spinner("one long call"):
        seen.append("called")
    assert seen == [1, 2, 3, "called"]
    assert capsys.readouterr().out == ""      # bars go to stderr, never into the output
