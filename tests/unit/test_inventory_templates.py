"""The built-in reader's templates: plain variable references rendered as Ansible renders them, the rest refused."""

from __future__ import annotations

import pytest

from fleetdiag.inventory.templates import TemplateProblem, is_template, magic_vars, render


def test_plain_references_render_as_ansible_renders_them() -> None:
    variables = {"port": 2200, "domain": "example.net", "host": "{{ inventory_hostname }}.{{ domain }}"}
    variables |= magic_vars("web01.lan", ("web",))
    assert render("{{ port }}", variables) == 2200  # a lone reference keeps its type (native Jinja)
    assert render("{{port}}x", variables) == "2200x"
    assert render("{{ host }}", variables) == "web01.lan.example.net"  # references to templates render too
    assert render("{{ inventory_hostname_short }}", variables) == "web01"
    assert render("{{ inventory_hostname_short }}", magic_vars("192.0.2.1", ())) == "192.0.2.1"
    assert render("no template", variables) == "no template" and not is_template(22)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{{ name | upper }}", "renders only plain variable references"),
        ("{% if x %}a{% endif %}", "renders only plain variable references"),
        ("{{ 2200 + 1 }}", "renders only plain variable references"),
        ("{{ missing }}.example.net", "'missing', which is undefined for this host"),
        ("{{ loop }}", "refers to itself in a loop"),
    ],
)
def test_anything_more_is_refused_with_a_reason(text: str, problem: str) -> None:
    with pytest.raises(TemplateProblem, match=problem):
        render(text, {"name": "x", "loop": "{{ loop }}"})
