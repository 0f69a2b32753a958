"""Settings: every value checked up front, and the one storage retry policy."""

from __future__ import annotations

import pytest

from tasks.settings import Settings, SettingsError, get_settings


def test_production_retry_policy_is_5_10_20_40_seconds():
    opts = Settings.model_construct().storage_task_options()
    assert opts == {"retries": 4, "retry_delay_seconds": [5.0, 10.0, 20.0, 40.0]}


def test_storage_tasks_carry_the_policy_read_at_start_up():
    """Declared once (tasks/common.py) from the environment of the process; the test
    session runs it scaled down (tests/conftest.py)."""
    from tasks.storage_tasks import apply_retention, read_windows, write_forecasts

    for t in (read_windows, write_forecasts, apply_retention):
        assert t.retries == 4
        assert t.retry_delay_seconds == [0.2, 0.4, 0.8, 1.6]


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("FORECAST_MAX_MISSING", "-1", "FORECAST_MAX_MISSING='-1'"),
        ("FORECAST_MAX_MISSING", "12", "must be below the window (12)"),
        ("FORECAST_LEVEL", "1.5", "FORECAST_LEVEL='1.5'"),
        ("FORECAST_FREQ", "often", "fixed positive frequency"),
        ("FORECAST_CATCH_UP_SLOTS", "-3", "FORECAST_CATCH_UP_SLOTS='-3'"),
        ("FORECAST_TRAIN_MAX_SECONDS", "0", "FORECAST_TRAIN_MAX_SECONDS='0'"),
        ("FORECAST_FORECAST_RETENTION_DAYS", "0", "FORECAST_FORECAST_RETENTION_DAYS='0'"),
        ("FORECAST_ACCURACY_RETENTION_DAYS", "-1", "FORECAST_ACCURACY_RETENTION_DAYS='-1'"),
        ("FORECAST_ALERT_SLOTS", "0", "FORECAST_ALERT_SLOTS='0'"),
        ("FORECAST_ALERT_CLEAR_SLOTS", "0", "FORECAST_ALERT_CLEAR_SLOTS='0'"),
        ("FORECAST_ALERT_MIN_EXCESS", "-1", "FORECAST_ALERT_MIN_EXCESS='-1'"),
        ("FORECAST_ALERT_STEP", "13", "alert_step=13 must be at most the horizon (12)"),
    ],
)
def test_a_bad_setting_names_the_variable_the_value_and_the_range(monkeypatch, env, value, needle):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as err:
        get_settings()
    assert needle in str(err.value)


def test_a_bad_flow_parameter_is_named_as_a_parameter():
    with pytest.raises(SettingsError, match=r"parameter catch_up_slots=-1"):
        get_settings(catch_up_slots=-1)


def test_the_store_password_never_shows_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("FORECAST_STORE_URL", "postgresql+psycopg://u:hunter2@db/x")
    assert "hunter2" not in repr(get_settings())


def test_retention_defaults_and_environment(monkeypatch):
    s = get_settings()
    assert (s.forecast_retention_days, s.accuracy_retention_days) == (30.0, 90.0)
    monkeypatch.setenv("FORECAST_FORECAST_RETENTION_DAYS", "7.5")
    monkeypatch.setenv("FORECAST_ACCURACY_RETENTION_DAYS", "400")
    s = get_settings()
    assert (s.forecast_retention_days, s.accuracy_retention_days) == (7.5, 400.0)


def test_alert_rule_defaults_follow_the_level_and_the_horizon(monkeypatch):
    rule = get_settings().alert_rule()
    assert rule == {"k": 6, "m": 3, "level": 0.8, "step": 12, "min_excess": 1.0, "quiet": 12}
    monkeypatch.setenv("FORECAST_LEVEL", "0.95")  # p = 0.025 a side: 4 slots are enough
    monkeypatch.setenv("FORECAST_HORIZON", "6")  # the step judged is at most the horizon
    assert (get_settings().alert_rule()["k"], get_settings().alert_rule()["step"]) == (4, 6)
    monkeypatch.setenv("FORECAST_ALERT_SLOTS", "3")
    monkeypatch.setenv("FORECAST_ALERT_STEP", "1")
    monkeypatch.setenv("FORECAST_ALERT_MIN_EXCESS", "0")
    rule = get_settings().alert_rule()
    assert (rule["k"], rule["step"], rule["min_excess"]) == (3, 1, 0.0)


def test_live_recalibration_is_on_by_default_and_can_be_turned_off(monkeypatch):
    monkeypatch.delenv("FORECAST_ONLINE_CALIBRATION", raising=False)
    s = get_settings()
    assert s.online_calibration is True
    assert (s.calibration_window, s.calibration_min_scores, s.calibration_max_slots) == (
        2000,
        200,
        2016,
    )
    monkeypatch.setenv("FORECAST_ONLINE_CALIBRATION", "false")
    assert get_settings().online_calibration is False
