from groupspec.plugin.cli import main


def test_check_config_rejects_missing_file(tmp_path, capsys):
    assert main(["check-config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err
