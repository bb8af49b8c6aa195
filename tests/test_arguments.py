"""Bad arguments to the public API: one clear error, before anything is read or written.

A mistyped path, a date that is none, a name given as a text where a list is expected: each
gets an error saying what was wrong and what to do, never an empty result that looks right,
never a traceback from deep inside, and never a folder or file left behind.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

import omsframe as of
from omsframe.errors import CacheError, ConfigError
from omsframe.simulator.server import simulate
from tests.test_analysis_shop import Shop


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("batch_size", 0, "batch_size"),
        ("batch_size", -5, "batch_size"),
        ("workers", -1, "workers"),
        ("workers", 4 * (os.cpu_count() or 1) + 1, "more than four a core"),
        ("lookback", 30, "lookback"),
        ("lookback", dt.timedelta(minutes=-5), "lookback"),
        ("pii", "hash", "unknown PII policy"),
        ("wait", -1, "wait"),
    ],
)
def test_a_bad_sync_option_is_refused_before_anything_is_written(
    tmp_path: Path, option: str, value: object, says: str
) -> None:
    cache = tmp_path / "new"
    options: dict[str, Any] = {option: value}
    with pytest.raises(ConfigError, match=says) as error:
        # no server at this address: the option must be refused before any request
        of.sync("http://127.0.0.1:9", token="t", cache=cache, progress=False, **options)
    assert "\n" not in str(error.value)
    assert not cache.exists()


def test_load_refuses_what_is_not_a_cache(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    for path, says in [
        (tmp_path / "typo", "does not exist"),
        (tmp_path / "file.txt", "is a file"),
        (tmp_path / "empty", r"no manifest\.json"),
    ]:
        with pytest.raises(CacheError, match=says):
            of.load(path)
        with pytest.raises(CacheError, match=says):
            of.export(path, tmp_path / "out")
    assert not (tmp_path / "typo").exists() and not (tmp_path / "out").exists()


def test_rebuild_of_what_is_not_a_cache_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="does not exist"):
        of.rebuild(tmp_path / "typo")
    with pytest.raises(CacheError, match=r"no manifest\.json"):
        of.rebuild(tmp_path)
    assert not (tmp_path / "typo").exists()
    assert list(tmp_path.iterdir()) == []


def test_load_refuses_an_unknown_engine_keyword_or_table(shop: Shop) -> None:
    with pytest.raises(ConfigError, match="unknown engine 'spark'"):
        of.load(shop.path, engine="spark")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sinc"):
        of.load(shop.path, sinc="2025-01-01")
    with pytest.raises(ConfigError, match="unknown table"):
        of.load(shop.path, tables=["orders", "nope"])


def test_one_table_may_be_named_as_a_text(shop: Shop, tmp_path: Path) -> None:
    assert list(of.load(shop.path, tables="orders")) == ["orders"]
    files = of.export(shop.path, tmp_path, tables="channels")
    assert [f.name for f in files] == ["channels.parquet"]


@pytest.mark.parametrize("bad", ["yesterday", "2025-13-01", "2025/01/01", "", 2025])
def test_a_date_that_is_none_is_one_clear_error(shop: Shop, bad: object) -> None:
    with pytest.raises(ConfigError, match="since") as error:
        of.load(shop.path, since=bad)  # type: ignore[arg-type]
    assert "\n" not in str(error.value)


def test_dates_in_every_usual_form_mean_the_same_moment(shop: Shop) -> None:
    def orders(since: object) -> list[int]:
        frame = of.load(shop.path, since=since, tables="orders").orders  # type: ignore[arg-type]
        return sorted(frame["order_id"].tolist())

    expected = orders(dt.datetime(2024, 12, 1, tzinfo=dt.UTC))
    assert 0 < len(expected) < len(of.load(shop.path, tables="orders").orders)
    for same in [
        "2024-12",
        "2024-12-01",
        "2024-12-01T03:00:00+03:00",
        dt.date(2024, 12, 1),
        dt.datetime(2024, 12, 1),
        pd.Timestamp("2024-12-01"),
        np.datetime64("2024-12-01"),
    ]:
        assert orders(same) == expected, same


def test_since_after_until_is_refused_not_an_empty_answer(shop: Shop, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not before until"):
        of.load(shop.path, since="2025-01-01", until="2024-11-01")
    with pytest.raises(ConfigError, match="not before until"):
        of.export(shop.path, tmp_path / "out", since="2025-01-01", until="2025-01-01")
    assert not (tmp_path / "out").exists()


def test_export_checks_everything_before_writing_a_file(shop: Shop, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="unknown table"):
        of.export(shop.path, out, tables=["orders", "bogus"])
    with pytest.raises(ConfigError, match="unknown export format"):
        of.export(shop.path, out, format="xls")  # type: ignore[arg-type]
    assert not out.exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        of.export(shop.path, tmp_path / "afile")


def test_an_export_leaves_no_table_of_an_earlier_one_in_any_format(
    shop: Shop, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert len(of.export(shop.path, out)) > 5
    (out / "notes.txt").write_text("mine")
    of.export(shop.path, out, tables="orders")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "orders.parquet"]
    of.export(shop.path, out, format="csv", tables=["orders", "channels"])
    assert sorted(p.name for p in out.iterdir()) == ["channels.csv", "notes.txt", "orders.csv"]


def test_export_refuses_a_damaged_manifest(shop: Shop, tmp_path: Path) -> None:
    import shutil

    cache = tmp_path / "c"
    shutil.copytree(shop.path, cache)
    (cache / "manifest.json").write_text("{not json")
    with pytest.raises(CacheError, match="manifest"):
        of.export(cache, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_dimension_may_be_named_as_a_text(shop: Shop) -> None:
    tables = shop.tables["pandas"]
    one = of.revenue(tables, dims="channel", measures="net_sales", tz="UTC")
    listed = of.revenue(tables, dims=["channel"], measures=["net_sales"], tz="UTC")
    pd.testing.assert_frame_equal(one, listed)
    assert "channel" in one.columns
    rates = of.return_rates(tables, dims="payment_type")
    assert rates.equals(of.return_rates(tables, dims=["payment_type"]))


def test_expand_attributes_takes_polars_and_one_key_as_a_text() -> None:
    texts = ['{"color": "Red", "size": {"label": "M"}}', None, "not json", '{"color": 3}']
    frame = pd.DataFrame({"attributes": texts})
    assert of.expand_attributes(frame, "color")["attr_color"].tolist() == ["Red", None, None, 3]
    polars = of.expand_attributes(pl.DataFrame({"attributes": texts}), ["color", "size"])
    assert isinstance(polars, pl.DataFrame)
    assert polars["attr_color"].to_list() == ["Red", None, None, "3"]
    label = of.expand_attributes(pl.DataFrame({"attributes": texts}), "size", field="label")
    assert label["attr_size"].to_list() == ["M", None, None, None]


def test_analyses_of_a_window_without_sales_are_empty_not_an_error(shop: Shop) -> None:
    from omsframe.analysis.ledger import WindowWarning

    for engine in ("pandas", "polars"):
        empty = of.load(shop.path, since="2030-01", engine=engine)
        with pytest.warns(WindowWarning) as warned:
            assert len(of.rfm(empty)) == 0, engine
        assert warned[0].filename == __file__  # it points at the call


def test_a_report_of_a_cache_without_orders_says_so(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_bytes(b'{"format": 1}')
    with pytest.raises(CacheError, match="holds no orders yet"):
        of.write_report(tmp_path)


def test_a_sync_that_waited_in_vain_says_how_long_it_waited(tmp_path: Path) -> None:
    from omsframe.lock import CacheLock

    (tmp_path / "manifest.json").write_bytes(b'{"format": 1}')
    with CacheLock(tmp_path), pytest.raises(CacheError, match=r"after waiting 0\.2 s"):
        of.rebuild(tmp_path, wait=0.2)


def test_loaded_tables_complete_in_jupyter_and_flattened_ones_are_exact(shop: Shop) -> None:
    tables = of.load(shop.path, tables=["orders", "order_items"])
    assert {"orders", "order_items"} <= set(dir(tables))
    flat = of.flatten_orders([]).to_pandas()
    assert str(flat["order_items"]["net_amount"].dtype).startswith("decimal128")


def test_a_ledger_of_tables_loaded_for_a_window_warns_what_it_lacks(shop: Shop) -> None:
    import warnings

    from omsframe.analysis.ledger import WindowWarning

    window = of.load(shop.path, since="2024-12", tables=["orders", "order_items"])
    assert window.window[0] == dt.datetime(2024, 12, 1, tzinfo=dt.UTC)
    with pytest.warns(WindowWarning, match="load without since="):
        of.revenue(window, tz="UTC")
    with pytest.warns(of.WindowWarning, match="edges are UTC midnights") as warned:
        of.ledger(window)  # the ledger itself warns too, once
    assert len(warned) == 1 and warned[0].filename == __file__
    whole = of.load(shop.path, tables=["orders", "order_items"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        of.revenue(whole, tz="UTC")


def test_analyses_that_need_window_functions_say_which_engine_to_load(shop: Shop) -> None:
    from omsframe.analysis import AnalysisError

    tables = of.load(shop.path, engine="pyarrow")
    for analysis in (of.rfm, of.time_in_state, of.lead_time_summary):
        with pytest.raises(AnalysisError, match="engine='pandas'"):
            analysis(tables)


def test_pandas_types_do_not_depend_on_the_rows_loaded(shop: Shop) -> None:
    whole = of.load(shop.path, tables=["order_items", "channels"])
    items = whole.order_items
    assert items["parent_omnitron_id"].isna().any()  # (the shop has items without a parent)
    assert str(items["parent_omnitron_id"].dtype) == "int64[pyarrow]"
    one = of.load(shop.path, tables="order_items").order_items.dropna(subset="parent_omnitron_id")
    assert str(of.flatten_orders([]).to_pandas()["order_items"]["product_id"].dtype) == str(
        one["product_id"].dtype
    )
    assert str(whole.channels["is_active"].dtype) == "bool[pyarrow]"
    assert str(items["order_id"].dtype) == "int64"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"last_sync": "garbage"}, "'last_sync' is a str"),
        ({"cursors": "x"}, "'cursors' is a str"),
        ({"cursors": {"orders": "notadate"}}, "cursors.orders"),
        ({"probe": []}, "'probe' is a list"),
        ({"checkpoint": {"orders": 5}}, "checkpoint.orders"),
    ],
)
def test_a_damaged_manifest_is_one_line_that_names_the_field(
    tmp_path: Path, change: dict[str, object], says: str
) -> None:
    import json

    manifest = {"format": 1, "source_url": "http://127.0.0.1:9", **change}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    for call in (
        lambda: of.cache_info(tmp_path),
        lambda: of.load(tmp_path),
        lambda: of.sync(cache=tmp_path, token="t", progress=False),
    ):
        with pytest.raises(CacheError, match=says) as error:
            call()
        assert "restore it from a backup, or move the cache folder away" in str(error.value)


def test_a_first_sync_refused_by_the_server_leaves_no_folder(tmp_path: Path) -> None:
    from omsframe.errors import AuthError
    from omsframe.simulator.server import simulate

    cache = tmp_path / "new"
    with simulate(orders=50) as oms, pytest.raises(AuthError):
        of.sync(oms.url, token="wrong", cache=cache, progress=False)
    assert not cache.exists()


def test_status_says_a_sync_is_running_not_that_one_did_not_finish(tmp_path: Path) -> None:
    from omsframe.lock import CacheLock

    (tmp_path / "manifest.json").write_bytes(b'{"format": 1, "checkpoint": {"orders": {}}}')
    with CacheLock(tmp_path):
        shown = str(of.cache_info(tmp_path))
    assert "running now (pid" in shown and "did not finish" not in shown
    assert "did not finish" in str(of.cache_info(tmp_path))


def test_tables_without_a_manifest_are_a_lost_manifest_not_a_new_cache(
    shop: Shop, tmp_path: Path
) -> None:
    import shutil

    cache = tmp_path / "c"
    shutil.copytree(shop.path, cache)
    (cache / "manifest.json").unlink()
    info = of.cache_info(cache)
    assert not info.exists and "no manifest.json (lost); restore it from a backup" in str(info)
    with simulate(orders=50) as oms, pytest.raises(CacheError, match=r"no manifest\.json"):
        of.sync(oms.url, token=oms.token, cache=cache, progress=False)  # another OMS: refused
    with pytest.raises(CacheError, match=r"no manifest\.json"):
        of.rebuild(cache)
    assert not (cache / "manifest.json").exists()


def test_a_first_sync_writes_its_manifest_before_any_table(tmp_path: Path) -> None:
    import omsframe.store

    cache = tmp_path / "new"
    seen: list[bool] = []
    upsert = omsframe.store.Store.upsert_batch

    def watched(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((cache / "manifest.json").exists())
        return upsert(self, *args, **kwargs)

    with simulate(orders=50) as oms, pytest.MonkeyPatch.context() as patch:
        patch.setattr(omsframe.store.Store, "upsert_batch", watched)
        of.sync(oms.url, token=oms.token, cache=cache, progress=False, events=False)
    assert seen and all(seen)


def test_status_gives_the_span_of_months_with_its_gaps_and_undated_orders() -> None:
    info = of.CacheInfo(path="c", exists=True, months=("2024-11", "2025-02"), undated_orders=True)
    assert "in months 2024-11 .. 2025-02 (4 months, 2 without orders, and some" in str(info)
    assert "(3 months)" in str(
        of.CacheInfo(path="c", exists=True, months=("2024-12", "2025-01", "2025-02"))
    )
    assert of.CacheInfo(path="c", exists=True, months=("2025-01",)).to_dict()["months"] == (
        "2025-01",
    )


def test_the_report_says_retries_plainly_and_their_waits_as_a_sum() -> None:
    report = of.SyncReport(cache="c", source="s")
    assert [line.split() for line in str(report).splitlines() if "retries" in line] == [
        ["retries", "0"]
    ]
    report.retries, report.throttled, report.waited_seconds = 3, 2, 1.5
    assert "2 × 429; requests waited 1.5s in all, side by side" in str(report)


def test_the_report_says_what_the_server_counted_was_for_this_read() -> None:
    report = of.SyncReport(cache="c", source="s", server_count=3)
    assert "the server counted 3 for this read" in str(report)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: of.revenue(t, dims=5), "dims must be a column name or a list of them"),  # type: ignore[arg-type]
        (
            lambda t: of.revenue(t, dims="chanel"),
            "unknown dimension.* chanel.*choose from.*channel",
        ),
        (
            lambda t: of.lead_time_summary(of.lead_times(t), dims="payment_type"),
            "unknown dimension.* payment_type: the lead times has no such column",
        ),
        (lambda t: of.top_products(t, n="3"), "n must be a whole number of at least 1"),  # type: ignore[arg-type]
        (lambda t: of.top_products(t, n=2.5), "n must be a whole number of at least 1"),  # type: ignore[arg-type]
        (lambda t: of.ledger([t.orders, t.order_items]), "ledger takes the loaded tables"),  # type: ignore[arg-type]
        (lambda t: of.campaign_days(t, threshold="0.2"), "threshold must be a discount rate"),  # type: ignore[arg-type]
        (lambda t: of.campaign_days(t, threshold=None), "threshold must be a discount rate"),  # type: ignore[arg-type]
        (lambda t: of.campaign_days(t, threshold=2), "between 0 and 1"),
        (lambda t: of.discount_depth(t, edges=[25, 10]), "edges must be increasing"),
        (lambda t: of.lead_time_summary(t, percentiles=[0]), "percentiles must be whole numbers"),
        (lambda t: of.rfm(t, as_of="01/2025"), "as_of must be a date"),
    ],
)
def test_a_bad_analysis_argument_is_one_clear_error(shop: Shop, call: Any, message: str) -> None:
    with pytest.raises(of.AnalysisError, match=message):
        call(shop.tables["pandas"])


def test_analysis_arguments_take_the_forms_a_user_would_write(shop: Shop) -> None:
    t = shop.tables["pandas"]
    assert len(of.revenue(t, dims=None)) == len(of.revenue(t))  # type: ignore[arg-type]
    assert "p50_hours" in of.lead_time_summary(t, percentiles=np.int64(50)).columns  # type: ignore[arg-type]
    assert set(of.discount_depth(t, edges=25)["bucket"]) <= {"0%", "0-25%", ">25%"}  # type: ignore[arg-type]
    assert "currency" in of.discount_depth(t, dims="currency").columns  # kept, not dropped
    assert of.rfm(t, as_of="2025-02").equals(of.rfm(t, as_of="2025-02-01"))


def test_ipython_shows_reports_as_their_aligned_lines_not_a_dataclass_dump() -> None:
    from IPython.lib.pretty import pretty

    report = of.SyncReport(cache="c", source="s", duration_seconds=4.7062422259987216)
    assert pretty(report) == str(report) and "4.706242" not in pretty(report)
    info = of.CacheInfo(path="c", exists=True, months=("2025-01", "2025-02"))
    assert pretty(info) == str(info) and "months=(" not in pretty(info)


def test_the_report_says_when_orders_came_older_than_stored_or_twice() -> None:
    report = of.SyncReport(cache="c", source="s", orders_seen=5, orders_new=5)
    assert "older than" not in str(report) and "twice" not in str(report)
    report.orders_stale, report.duplicates = 3, 2
    assert "3 older than the copy stored (kept), 2 read twice" in str(report)
