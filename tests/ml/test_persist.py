import joblib
import numpy as np
import pytest

from ml.baseline import SeasonalBaseline
from ml.forest import GroupForest
from ml.persist import ModelFileError, RetrainSchedule, load_model, retrain_due, save_model


def test_round_trip_keeps_scores_and_training_window(tmp_path):
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(1000, 4)), rng.normal(size=(50, 4))
    forest = GroupForest(["a", "b", "c", "d"]).fit(train)
    path = tmp_path / "models" / "site-1_cache.joblib"
    meta = save_model(forest, path, key="site-1/cache", trained_from=10.0, trained_to=20.0)
    loaded, meta2 = load_model(path, kind="GroupForest")
    assert meta2 == meta and meta2.trained_from == 10.0 and meta2.trained_to == 20.0
    np.testing.assert_array_equal(loaded.score(test).scores, forest.score(test).scores)
    assert not list(tmp_path.glob("models/*.tmp"))


def test_refuses_other_kind_version_garbage_and_missing(tmp_path):
    ts = np.arange(0, 86_400 * 3, 600.0)
    base = SeasonalBaseline().fit(ts, np.sin(ts))
    path = tmp_path / "b.joblib"
    save_model(base, path, key="s", trained_from=0, trained_to=1)
    with pytest.raises(ModelFileError, match="expected a GroupForest"):
        load_model(path, kind="GroupForest")
    blob = joblib.load(path)
    blob["meta"]["format_version"] = 999
    joblib.dump(blob, path)
    with pytest.raises(ModelFileError, match="format version 999"):
        load_model(path)
    path.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="unreadable"):
        load_model(path)
    with pytest.raises(ModelFileError, match="no such"):
        load_model(tmp_path / "missing.joblib")


def test_retrain_schedule(tmp_path):
    meta = save_model(object(), tmp_path / "m", key="k", trained_from=0, trained_to=1000)
    sched = RetrainSchedule(every_s=3600, window_s=86_400)
    assert sched.due(None, 0)
    assert not sched.due(meta, 1000 + 3599)
    assert sched.due(meta, 1000 + 3600)
    assert retrain_due(meta, 5000, 3600)
    assert sched.window(100_000) == (100_000 - 86_400, 100_000)
