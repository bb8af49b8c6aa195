"""Every analysis hands pandas users one dtype per kind of measure, whatever Arrow did inside."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

import omsframe as of
from tests.test_analysis_shop import Shop

ANALYSES = [
    "revenue", "discounts", "discount_depth", "campaign_days", "top_discounted_products",
    "state_counts", "state_changes", "transitions", "time_in_state", "lead_times",
    "lead_time_summary", "funnel", "return_rates", "cohorts", "new_vs_returning", "rfm",
    "abc_classes", "product_sales", "top_products", "webhook_health", "ledger", "transactions",
]  # fmt: skip


@pytest.mark.parametrize("name", ANALYSES)
def test_measures_are_numpy_and_only_ids_that_may_be_missing_are_arrow(
    shop: Shop, name: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (window warnings: not the point here)
        result = getattr(of, name)(shop.tables["pandas"])
    assert isinstance(result, pd.DataFrame) and len(result)
    for column, dtype in result.dtypes.items():
        if not isinstance(dtype, pd.ArrowDtype):
            continue
        kind = str(dtype)
        assert kind.startswith("decimal") or (
            kind == "int64[pyarrow]"
            and (str(column).endswith("_id") or column == "cargo_company")
            and column not in ("order_id", "item_id", "event_id")
        ), f"{name}: {column} is {kind}"
    counts = [c for c in result.columns if c in ("orders", "units", "m_score", "delivered")]
    assert all(result[c].dtype == "int64" for c in counts)


def test_a_dimension_keeps_the_tables_dtype_whether_or_not_it_has_gaps(shop: Shop) -> None:
    tables = shop.tables["pandas"]
    kind = tables.orders["has_gift_box"].dtype
    full = of.state_counts(tables, dims="has_gift_box")
    assert full["has_gift_box"].dtype == kind and not full["has_gift_box"].hasnans
    orders = tables.orders.assign(has_gift_box=tables.orders["has_gift_box"].where(lambda s: ~s))
    gappy = of.state_counts({**tables, "orders": orders}, dims="has_gift_box")
    assert gappy["has_gift_box"].hasnans and gappy["has_gift_box"].dtype == kind
