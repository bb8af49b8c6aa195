from __future__ import annotations

import pandas as pd
import pytest

from omsframe.attributes import expand_attributes
from omsframe.flatten import flatten_orders
from tests.test_flatten import example_copy


def test_expand_chosen_keys_of_product_attributes_without_mutating_input() -> None:
    products = flatten_orders(example_copy()).tables["products"].to_pandas()
    before = products.copy()
    expanded = expand_attributes(products, keys=["integration_kol_boyu", "absent"])
    assert expanded["attr_integration_kol_boyu"].tolist() == ["kısa"]
    assert expanded["attr_absent"].tolist() == [None]
    pd.testing.assert_frame_equal(products, before)
    assert "attr_integration_kol_boyu" not in products.columns


def test_expand_nested_kwargs_field() -> None:
    products = flatten_orders(example_copy()).tables["products"].to_pandas()
    out = expand_attributes(
        products, ["hallo"], column="attributes_kwargs", field="data_type", prefix="kind_"
    )
    assert out["kind_hallo"].tolist() == ["valuelabel"]


def test_bad_json_and_missing_column() -> None:
    df = pd.DataFrame({"attributes": ["{not json", '["list"]', None]})
    assert expand_attributes(df, ["a"])["attr_a"].tolist() == [None, None, None]
    with pytest.raises(KeyError, match="no column 'extra'"):
        expand_attributes(df, ["a"], column="extra")
