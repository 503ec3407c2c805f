"""cfn-lint over every synthesized template: no errors."""

from __future__ import annotations

import pytest
from cfnlint.api import lint_file
from cfnlint.config import ManualArgs

from tests.stacks.conftest import SynthesizedApp


@pytest.mark.parametrize("app_name", ["reference_app", "mixed_app", "guarded_app"])
def test_templates_have_no_cfn_lint_errors(app_name: str, request: pytest.FixtureRequest) -> None:
    app: SynthesizedApp = request.getfixturevalue(app_name)
    files = app.template_files()
    assert len(files) == 4 * len(app.stages)
    regions = sorted({stage.region for stage in app.stages if stage.region})
    for path in files:
        errors = [
            f"{match.rule.id} {match.message} ({match.linenumber})"
            for match in lint_file(path, config=ManualArgs(regions=regions))
            if match.rule.id.startswith("E")
        ]
        assert errors == [], path.name
