"""The study's stage record (benchmarks/stage_runner.py): two runners sharing one work folder
(two arms at once) keep each other's entries."""

import json
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from stage_runner import StageRecord  # noqa: E402


def test_two_runners_keep_each_others_entries(tmp_path):
    (tmp_path / "stages.json").write_text(json.dumps({"earlier": {"done": True}}))
    first, second = StageRecord(tmp_path), StageRecord(tmp_path)  # both read the file before either writes
    first.data["sample.a"] = {"done": True}
    first.touched.add("sample.a")
    first.save()
    second.data["sample.b"] = {"done": False, "attempts": 1}
    second.touched.add("sample.b")
    second.save()
    on_disk = json.loads((tmp_path / "stages.json").read_text())
    assert on_disk == {"earlier": {"done": True}, "sample.a": {"done": True}, "sample.b": {"done": False, "attempts": 1}}
    assert second.data == on_disk  # the runner sees the other's entries from then on
