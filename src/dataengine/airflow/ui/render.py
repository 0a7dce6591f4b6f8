"""The Jinja2 environment of the monitoring pages: templates shipped in the package, always autoescaped.

Every value a template prints is escaped unless it is :class:`~markupsafe.Markup`; the only Markup we
make ourselves is our own stylesheet and scripts (static.py) and what another template rendered.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from dataengine.airflow.ui.static import CLIP_JS, CSS, ORIGIN_COLOURS, STREAM_JS


def _fixed(value: float, digits: int = 1) -> str:
    """A number with ``digits`` decimals (SVG coordinates, scores)."""
    return f"{value:.{digits}f}"


def _json(value: Any, sort: bool = False) -> str:
    """``value`` as JSON text, to be escaped like any other text (tojson is for script elements)."""
    return json.dumps(value, sort_keys=sort)


@cache
def environment() -> Environment:
    """The one environment (templates are parsed once per process, then cached by Jinja)."""
    env = Environment(
        loader=PackageLoader("dataengine.airflow.ui", "templates"),
        # On for every template, .svg included: select_autoescape would leave unknown extensions raw.
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(fixed=_fixed, json=_json)
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":")}  # tojson: compact, as the JS reads it
    env.globals.update(
        css=Markup(CSS), clip_js=Markup(CLIP_JS), stream_js=Markup(STREAM_JS), colours=ORIGIN_COLOURS
    )
    return env


def render(name: str, **context: Any) -> Markup:
    """Template ``name`` rendered with ``context``; Markup, so another template includes it unescaped."""
    return Markup(environment().get_template(name).render(**context))
