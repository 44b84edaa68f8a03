"""Typed application keys."""

from __future__ import annotations

from aiohttp import web

from signaling.config import ServerConfig
from webrtc_stt.hub import SessionHub

HUB = web.AppKey("hub", SessionHub)
CONFIG = web.AppKey("config", ServerConfig)
