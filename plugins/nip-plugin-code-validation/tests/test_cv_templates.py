"""Custom system prompt templates are checked when the parameters are built."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import jinja2
import jinja2.meta
import pytest
from nip_core.errors import NipConfigError

from nip_plugin_code_validation.parameters import (
    TEMPLATE_VARIABLES,
    CodeValidationAgentParameters,
)


def _template(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "prompt.j2"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def test_a_template_with_the_prompts_variables_is_accepted(tmp_path) -> None:
    path = _template(
        tmp_path,
        "Check {{ solution }} for {{ question }}; at most {{ max_questions }} "
        "questions.{% if randomized_stance %} ({{ stance }}){% endif %}",
    )
    params = CodeValidationAgentParameters(system_prompt_template_path=path)
    assert params.system_prompt_template_path == path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Decide {% if %}", "Jinja2 syntax error on line 1: Expected an expression"),
        ("line one\n{{ question }\n", "Jinja2 syntax error on line 2"),
        (
            "Decide on {{ question }} {{ nonexistent_var }}",
            "the template uses nonexistent_var, which the prompts are not rendered "
            "with; the variables are: decision_example,",
        ),
        (b"Decide \xff\xfe {{ question }}", "the template is not UTF-8 text"),
    ],
)
def test_a_broken_template_is_one_clear_problem(tmp_path, text, message) -> None:
    path = _template(tmp_path, text)
    with pytest.raises(NipConfigError) as caught:
        CodeValidationAgentParameters(system_prompt_template_path=path)
    (problem,) = caught.value.problems
    assert problem.path == "system_prompt_template_path"
    assert message in problem.message


def test_the_packaged_templates_use_only_the_documented_variables() -> None:
    environment = jinja2.Environment()
    root = resources.files("nip_plugin_code_validation") / "templates"
    # the system prompts of every protocol and the parts they include (not the
    # dataset generation's and the judge's templates, rendered with their own)
    prompts = [t for t in root.iterdir() if t.name.startswith("_")] + [
        template
        for protocol in root.iterdir()
        if protocol.is_dir() and protocol.name not in ("generation", "judge")
        for template in protocol.iterdir()
    ]
    used: set[str] = set()
    for template in prompts:
        parsed = environment.parse(template.read_text(encoding="utf-8"))
        used |= jinja2.meta.find_undeclared_variables(parsed)
    assert used  # the templates were read
    assert used <= TEMPLATE_VARIABLES
