"""Fault injection, silent wrong numbers (issue 32, items 5, 7, 8, 9, 13): latency tables with
negative or NaN entries, a genotype that is not the one trained, a genotype of another space, an
architecture that never moves, and NaN diagnoses that name the cause they can see."""
import json

import pytest

from faults import TINY, one_line, search
from nas.cost.latency import op_key


@pytest.mark.parametrize("value, shown", [(-13.87, "-13.87"), (float("nan"), "nan"), (float("inf"), "inf")])
def test_a_latency_table_entry_that_is_not_a_time_is_refused_on_load(tmp_path, capsys, value, shown):
    table = tmp_path / "lat.json"
    entries = {op_key("nor_conv_3x3", 4, 4, 1, 32, 32, 1): value, op_key("none", 4, 4, 1, 32, 32, 1): 0.0}
    table.write_text(json.dumps({"device": "cpu", "entries": entries}))
    out = tmp_path / "o"
    line = one_line(capsys, search(*TINY, "cost.metric=latency", f"cost.latency_table={table}", "cost.target=3",
                                   "--out", str(out)))
    assert line == (f"nas-search: error: cost.latency_table: {table}: nor_conv_3x3 on 4x32x32 -> 4 channels, stride 1, "
                    f"at batch 1 takes {shown} ms; every entry must be a finite time >= 0 ms; measure it again with "
                    f"tools/profile_latency.py")
    assert not (out / "checkpoint.pt").exists()
