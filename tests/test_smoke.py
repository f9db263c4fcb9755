from importlib.metadata import version

import pytest
from groupspec.plugin.cli import main


def test_check_config_rejects_missing_file(tmp_path, capsys):
    assert main(["check-config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"groupspec {version('groupspec')}"


def test_help_opens_with_what_groupspec_does(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    about = out.split("\n\n")[1]  # after the usage lines
    assert about.startswith("groupspec makes account and household") and "Customer.io" in about
    assert "imported only when" not in out
    assert "relative to the\nworking directory" in out or "relative to the working directory" in " ".join(out.split())
