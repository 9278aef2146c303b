"""The docs are generated from, or checked against, the code's registries."""

from hybrid_trader.market_data.quality import RULES
from tests.conftest import PROJECT_ROOT


def test_data_docs_list_every_validation_rule_as_in_code():
    text = (PROJECT_ROOT / "docs" / "data.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    expected = [f"| `{rule.name}` | {rule.kind} | {rule.description} |" for rule in RULES.values()]
    assert rows == expected
