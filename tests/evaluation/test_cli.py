import json

from mendloop.cli import main


def test_eval_nab_json_is_one_object_on_stdout(nab_root, capsys):
    rc = main(["eval", "nab", "--files", "artificialWithAnomaly/art_daily_jumpsup.csv", "--json"])
    out = capsys.readouterr()
    assert rc == 0
    result = json.loads(out.out)  # exactly one JSON document, nothing else
    assert result["files"] == 1 and "standard" in result["default"]
    assert "art_daily_jumpsup" in out.err  # progress went to stderr


def test_eval_refuses_unknown_files_and_machines(nab_root, smd_root, capsys):
    assert main(["eval", "nab", "--files", "nope.csv"]) == 2
    assert main(["eval", "smd", "--machines", "machine-9-9"]) == 2
    err = capsys.readouterr().err
    assert "not NAB files: nope.csv" in err and "machine-9-9" in err


def test_eval_smd_text_output(smd_root, capsys):
    args = ["eval", "smd", "--machines", "machine-2-1", "--limit", "3000"]
    rc = main([*args, "--protocol", "per-machine", "--ranker-setting", "fixed"])
    assert rc == 0
    assert "machine-2-1: F1 point-wise" in capsys.readouterr().out
    # too few training rows to choose the setting on synthetic faults: said, not crashed
    assert main([*args, "--protocol", "per-machine"]) == 2
    assert "--ranker-setting fixed" in capsys.readouterr().err
    # one machine cannot be left out of anything: said, not crashed
    assert main(args) == 2
    assert "at least 2 machines" in capsys.readouterr().err
