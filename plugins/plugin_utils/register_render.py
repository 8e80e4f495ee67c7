# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the change register's data (``module_utils/change_register.py``) into one static HTML file.

All markup lives in the Jinja2 templates beside this file
(``register_templates/``); this module only loads them, embeds the data as
JSON and computes the Content-Security-Policy hashes that let the page's own
inline script and style run while forbidding anything else (no network, no
external assets), so the file works offline from ``file://``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re

from ansible_collections.changeops.itsm.plugins.module_utils.errors import MissingDependency

try:
    import jinja2
    from markupsafe import Markup
except ImportError:  # pragma: no cover - jinja2 is an ansible-core dependency
    jinja2 = None
    Markup = str

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "register_templates")
TEMPLATE_FILES = ("register.html.j2", "register.css", "register.js")
#: the charting library the Insights page draws its trends with (see register_templates/vendor/README.md)
CHART_LIBRARY = os.path.join("vendor", "chart.umd.min.js")
FINGERPRINT_META = re.compile(r'<meta name="changeops-register-fingerprint" content="([0-9a-f]{64})"')

# JSON inside <script> must not be able to close the element or open a comment.
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SCRIPT_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def script_json(value):
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return Markup(_SCRIPT_ESCAPE_RE.sub(lambda match: _SCRIPT_ESCAPES[match.group(0)], text))


def _csp_hash(text):
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


class RegisterRenderer(object):
    """Renders register data to HTML; ``digest`` changes whenever a template does."""

    def __init__(self, template_dir=TEMPLATE_DIR):
        if jinja2 is None:
            raise MissingDependency("the change register needs the jinja2 Python library on the controller")
        self.template_dir = template_dir
        sources = []
        for name in TEMPLATE_FILES:
            path = os.path.join(template_dir, name)
            try:
                with open(path, "r", encoding="utf-8") as stream:
                    sources.append(stream.read())
            except OSError as exc:
                raise MissingDependency("change register template %s cannot be read: %s" % (path, exc.strerror))
        self._template_source, self.style, self.script = sources
        path = os.path.join(template_dir, CHART_LIBRARY)
        try:
            with open(path, "r", encoding="utf-8") as stream:
                self.chart_script = stream.read()
        except OSError as exc:
            raise MissingDependency("change register chart library %s cannot be read: %s" % (path, exc.strerror))
        if "</script" in self.chart_script.lower():
            raise MissingDependency("change register chart library %s cannot be embedded inline (it holds </script)"
                                    % path)
        sources.append(self.chart_script)
        self.digest = hashlib.sha256("\0".join(sources).encode("utf-8")).hexdigest()
        self.environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(template_dir),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.environment.filters["script_json"] = script_json

    def render_html(self, register, fingerprint):
        index = {key: value for key, value in register.items() if key not in ("chunks", "cis")}
        template = self.environment.get_template("register.html.j2")
        return template.render(
            register=register,
            index=index,
            chunks=register["chunks"],
            cis=register["cis"],
            fingerprint=fingerprint,
            style=Markup(self.style),
            script=Markup(self.script),
            style_hash=_csp_hash(self.style),
            script_hash=_csp_hash(self.script),
            chart_script=Markup(self.chart_script),
            chart_hash=_csp_hash(self.chart_script),
        )

    @staticmethod
    def read_fingerprint(stream):
        match = FINGERPRINT_META.search(stream.read(8192))
        return match.group(1) if match else None
