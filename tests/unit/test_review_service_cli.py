# -*- coding: utf-8 -*-
"""The review service's command line: ``serve --auth`` offers every sign-in mode the configuration accepts."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from ansible_collections.changeops.itsm.review_service.__main__ import build_parser  # noqa: E402
from ansible_collections.changeops.itsm.review_service.config import AUTH_MODES  # noqa: E402


@pytest.mark.parametrize("mode", ["local", "proxy", "oidc"])
def test_serve_accepts_every_auth_mode(mode):
    assert mode in AUTH_MODES
    args = build_parser().parse_args(["serve", "--auth", mode])
    assert args.auth == mode and args.command == "serve"


def test_serve_auth_defaults_to_the_configuration():
    assert build_parser().parse_args(["serve"]).auth is None  # CHANGEOPS_REVIEW_AUTH (default local) decides


@pytest.mark.parametrize("mode", ["saml", "OIDC", ""])
def test_serve_refuses_an_unknown_auth_mode(mode, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--auth", mode])
    assert "--auth" in capsys.readouterr().err
