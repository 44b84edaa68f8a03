"""Server settings from flags, ``WEBRTC_STT_*`` environment variables and a TOML file.

One table (:data:`OPTIONS`) names every setting of ``webrtc-stt serve`` once; flags, env
variables and file keys are derived from it (``max_sessions`` is ``--max-sessions``,
``WEBRTC_STT_MAX_SESSIONS`` and ``max_sessions = 32`` in the file). One precedence rule
applies to all of them: **flag > environment > file > default**. Every value is checked
here and a bad one raises :class:`SettingsError` with one line that says where it came from
(``--port``, ``WEBRTC_STT_PORT`` or ``server.toml: port``); unknown file keys are errors too.
The result is a frozen :class:`~signaling.config.ServerConfig` plus where each value came
from, for ``webrtc-stt config``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from signaling.config import ServerConfig

ENV_PREFIX = "WEBRTC_STT_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"

Kind = Literal["str", "int", "float", "bool", "list", "range"]
Value: TypeAlias = "str | int | float | bool | tuple[str, ...] | tuple[int, int] | None"
Source = Literal["flag", "env", "file", "default"]


class SettingsError(ValueError):
    """A setting is unknown or has a bad value; the message is one line for a person."""


@dataclass(frozen=True)
class Option:
    """One setting of ``webrtc-stt serve``."""

    name: str
    kind: Kind
    default: Value
    help: str
    choices: tuple[str, ...] = ()
    secret: bool = False
    """Masked by ``webrtc-stt config``."""
    metavar: str | None = None
    aliases: tuple[str, ...] = ()
    """More flags for the same setting (``--api-key`` for ``--api-keys``)."""

    @property
    def flag(self) -> str:
        """The command-line flag."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable."""
        return ENV_PREFIX + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("host", "str", "127.0.0.1", "HTTP bind address"),
    Option("port", "int", 8080, "HTTP port (0 picks a free one)"),
    Option("model", "str", "tiny.en", "faster-whisper model name or local CTranslate2 "
           "directory (default: the bundled tiny.en)"),
    Option("partial_model", "str", None, "smaller model for partials only (finals use --model)"),
    Option("device", "str", "cpu", "inference device", choices=("cpu", "cuda", "auto")),
    Option("compute_type", "str", "default",
           "CTranslate2 compute type (default: int8 on CPU, float16 on CUDA)"),
    Option("cpu_threads", "int", 0, "engine threads on CPU, all workers together "
           "(0: one per core)"),
    Option("engine_workers", "int", 0, "batches decoded at once, sharing --cpu-threads "
           "(0: two on a CPU with two or more threads, one on a GPU)"),
    Option("language", "str", "en", "language code, or 'auto' to detect (multilingual models)"),
    Option("ice_host", "list", (), "host address offered in ICE candidates (repeatable; "
           "env: comma-separated; default: all interface addresses)", metavar="ADDR"),
    Option("udp_ports", "range", None, "UDP port range for WebRTC media", metavar="MIN-MAX"),
    Option("ice_server", "list", (), "STUN/TURN URL offered to peers (repeatable)",
           metavar="URL"),
    Option("max_sessions", "int", 32, "hard cap on concurrent sessions"),
    Option("capacity_rtf", "float", 0.8, "refuse a session when the measured engine time of "
           "the sessions plus one more would pass this share of real time"),
    Option("allow_download", "bool", False, "allow fetching a model that is not cached locally"),
    Option("whip_token", "str", None, "one more accepted API key (older name)", secret=True),
    Option("cors_origin", "str", "*", "a single allowed origin (older form of "
           "--allowed-origin)"),
    # Auth and abuse bounds: docs/security.md.
    Option("api_keys", "list", (), "accepted API key (repeatable; env: comma-separated); "
           "required to serve a non-loopback address", secret=True, metavar="KEY",
           aliases=("--api-key",)),
    Option("api_keys_file", "str", None, "file with one API key per line (# comments)",
           metavar="FILE"),
    Option("no_auth", "bool", False, "serve a non-loopback address without keys, on purpose"),
    Option("token_secret", "str", None, "HMAC secret of session tokens (default: random at "
           "each start)", secret=True),
    Option("token_ttl", "float", 600.0, "lifetime of session tokens from POST /v1/tokens, s"),
    Option("page_token_url", "str", None, "where the bundled pages fetch a session token "
           "when auth is on (the operator's backend)", metavar="URL"),
    Option("allowed_origin", "list", (), "origin allowed for CORS and WebSocket upgrades "
           "(repeatable; default: any)", metavar="ORIGIN"),
    Option("max_sessions_per_key", "int", 16, "concurrent sessions per API key (0: no limit)"),
    Option("max_sessions_per_ip", "int", 16, "concurrent sessions per client address, "
           "loopback exempt (0: no limit)"),
    Option("max_session_s", "float", 14400.0, "end a session after this many seconds "
           "(0: never)"),
    Option("connect_timeout", "float", 15.0, "seconds a WebRTC peer gets to finish ICE and "
           "DTLS"),
    Option("resume_grace", "float", 30.0, "seconds a session whose connection dropped "
           "waits to be resumed (0: it ends with its connection)"),
    Option("keepalive_timeout", "float", 15.0, "seconds an idle connection or an incomplete "
           "request head is kept"),
    Option("body_timeout", "float", 10.0, "seconds a request body may take to arrive"),
    Option("health_details", "bool", False, "let /healthz show load figures to anyone"),
    Option("drain_timeout", "float", 30.0, "seconds live sessions get to finish their "
           "utterance on SIGTERM/SIGINT"),
    Option("log_format", "str", "text", "log line format", choices=("text", "json")),
    Option("log_level", "str", "info", "log level",
           choices=("debug", "info", "warning", "error")),
)
BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Settings:
    """Resolved settings: each value and where it came from."""

    values: Mapping[str, Value]
    sources: Mapping[str, Source]
    file: Path | None

    def text(self) -> str:
        """The effective settings as TOML (valid ``--config`` input), secrets masked."""
        lines = [f"# effective configuration (flag > env > file > default)"
                 f"{f'; file: {self.file}' if self.file else ''}"]
        for option in OPTIONS:
            value = self.values[option.name]
            shown = _toml(value)
            if option.secret and value:
                shown = '"***"'
            if value is None:
                lines.append(f"# {option.name} = (unset)  # {self.sources[option.name]}")
            else:
                lines.append(f"{option.name} = {shown}  # {self.sources[option.name]}")
        return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and one flag per option; unset flags stay ``None``."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help=f"TOML file of settings (env: {CONFIG_ENV})")
    for option in OPTIONS:
        help_text = f"{option.help} (env: {option.env}; default: {_shown_default(option)})"
        flags = (option.flag, *option.aliases)
        if option.kind == "bool" and option.flag.startswith("--no-"):
            # BooleanOptionalAction would read --no-auth as "auth off" = False.
            parser.add_argument(*flags, dest=option.name, default=None, action="store_const",
                                const=True, help=help_text)
        elif option.kind == "bool":
            parser.add_argument(*flags, dest=option.name, default=None,
                                action=argparse.BooleanOptionalAction, help=help_text)
        elif option.kind == "list":
            parser.add_argument(*flags, dest=option.name, default=None, action="append",
                                metavar=option.metavar, help=help_text)
        else:
            parser.add_argument(*flags, dest=option.name, default=None,
                                metavar=option.metavar or option.name.upper(), help=help_text)


def resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Apply flag > env > file > default to every option."""
    config_path = args.config or environ.get(CONFIG_ENV) or None
    file_values = _read_file(Path(config_path)) if config_path else {}
    values: dict[str, Value] = {}
    sources: dict[str, Source] = {}
    for option in OPTIONS:
        given = getattr(args, option.name, None)
        if given is not None:
            values[option.name] = _from_flag(option, given)
            sources[option.name] = "flag"
        elif option.env in environ:
            values[option.name] = _from_text(option, environ[option.env], option.env)
            sources[option.name] = "env"
        elif option.name in file_values:
            values[option.name] = file_values[option.name]
            sources[option.name] = "file"
        else:
            values[option.name] = option.default
            sources[option.name] = "default"
    return Settings(values, sources, Path(config_path) if config_path else None)


def server_config(settings: Settings) -> ServerConfig:
    """The :class:`ServerConfig` the settings describe (``SettingsError`` when invalid)."""
    # Imported here: the hub pulls in the VAD runtime, which `webrtc-stt transcribe` (whose
    # parser is built alongside) never needs.
    from signaling.config import AuthConfig, Limits, ServerConfig
    from webrtc_stt.config import EngineConfig, IcePolicy
    from webrtc_stt.hub import HubConfig

    v = settings.values
    language = _str(v["language"])
    ports = v["udp_ports"]
    low, high = ports if isinstance(ports, tuple) and len(ports) == 2 else (None, None)
    try:
        return ServerConfig(
            host=_str(v["host"]),
            port=_int(v["port"]),
            engine=EngineConfig(
                model=_str(v["model"]),
                partial_model=_opt_str(v["partial_model"]),
                device=_str(v["device"]),
                compute_type=_str(v["compute_type"]),
                cpu_threads=_int(v["cpu_threads"]),
                engine_workers=_int(v["engine_workers"]),
                language=None if language == "auto" else language,
            ),
            hub=HubConfig(
                max_sessions=_int(v["max_sessions"]),
                capacity_rtf=_float(v["capacity_rtf"]),
                language=language,
                ice_servers=_strs(v["ice_server"]),
                resume_grace_s=_float(v["resume_grace"]),
            ),
            ice=IcePolicy(
                host_addresses=_strs(v["ice_host"]),
                port_min=low if isinstance(low, int) else None,
                port_max=high if isinstance(high, int) else None,
            ),
            allow_download=bool(v["allow_download"]),
            whip_token=_opt_str(v["whip_token"]),
            cors_origin=_str(v["cors_origin"]),
            health_details=bool(v["health_details"]),
            drain_timeout_s=_float(v["drain_timeout"]),
            log_format=_str(v["log_format"]),
            log_level=_str(v["log_level"]),
            auth=AuthConfig(
                api_keys=_api_keys(v),
                no_auth=bool(v["no_auth"]),
                token_secret=_opt_str(v["token_secret"]),
                token_ttl_s=_float(v["token_ttl"]),
                page_token_url=_opt_str(v["page_token_url"]),
            ),
            limits=Limits(
                allowed_origins=_strs(v["allowed_origin"]) or ("*",),
                max_sessions_per_key=_int(v["max_sessions_per_key"]),
                max_sessions_per_ip=_int(v["max_sessions_per_ip"]),
                max_session_s=_float(v["max_session_s"]),
                connect_timeout_s=_float(v["connect_timeout"]),
                keepalive_timeout_s=_float(v["keepalive_timeout"]),
                body_timeout_s=_float(v["body_timeout"]),
            ),
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _api_keys(v: Mapping[str, Value]) -> tuple[str, ...]:
    """``api_keys`` plus the lines of ``api_keys_file`` (``#`` comments), in order, once."""
    keys = list(_strs(v["api_keys"]))
    path = _opt_str(v["api_keys_file"])
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"cannot read API keys file {path}: {exc.strerror or exc}"
                                ) from None
        keys += [line.strip() for line in text.splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
    return tuple(dict.fromkeys(keys))


# -- parsing -------------------------------------------------------------------------------


def _read_file(path: Path) -> dict[str, Value]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    values: dict[str, Value] = {}
    for key, raw in data.items():
        where = f"{path}: {key}"
        option = BY_NAME.get(key)
        if option is None:
            raise SettingsError(f"{path}: unknown key {key!r} (see `webrtc-stt config`)")
        values[key] = _from_toml(option, raw, where)
    return values


def _from_flag(option: Option, given: object) -> Value:
    where = option.flag
    if option.kind == "bool":
        return bool(given)
    if option.kind == "list":
        assert isinstance(given, list)
        return tuple(str(item) for item in given)
    return _from_text(option, str(given), where)


def _from_text(option: Option, text: str, where: str) -> Value:
    """A value written as text (a flag or an env variable)."""
    text = text.strip()
    match option.kind:
        case "str":
            return _choice(option, text, where)
        case "int":
            try:
                return int(text)
            except ValueError:
                raise SettingsError(f"{where} must be an integer, not {text!r}") from None
        case "float":
            try:
                return float(text)
            except ValueError:
                raise SettingsError(f"{where} must be a number, not {text!r}") from None
        case "bool":
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise SettingsError(f"{where} must be true or false, not {text!r}")
        case "list":
            return tuple(item.strip() for item in text.split(",") if item.strip())
        case "range":
            return _range(text, where)


def _from_toml(option: Option, raw: object, where: str) -> Value:
    """A value as TOML typed it."""
    match option.kind:
        case "str" if isinstance(raw, str):
            return _choice(option, raw, where)
        case "int" if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        case "float" if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        case "bool" if isinstance(raw, bool):
            return raw
        case "list" if isinstance(raw, list) and all(isinstance(i, str) for i in raw):
            return tuple(str(i) for i in raw)
        case "list" if isinstance(raw, str):
            return (raw,)
        case "range" if isinstance(raw, str):
            return _range(raw, where)
    wanted = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or "
              "false", "list": "a list of strings", "range": 'a string "MIN-MAX"'}[option.kind]
    raise SettingsError(f"{where} must be {wanted}, not {raw!r}")


def _choice(option: Option, text: str, where: str) -> str:
    if not option.choices:
        return text
    if text.lower() not in option.choices:  # INFO and info alike
        raise SettingsError(f"{where} must be one of {', '.join(option.choices)}, not {text!r}")
    return text.lower()


def _range(text: str, where: str) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise SettingsError(f"{where} must be MIN-MAX, not {text!r}") from None
    if not 1 <= low <= high <= 65535:
        raise SettingsError(f"{where}: bad port range {text!r}")
    return low, high


def _shown_default(option: Option) -> str:
    default = option.default
    if default is None or default == ():
        return "none"
    return str(default).lower() if isinstance(default, bool) else str(default)


def _toml(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return '""'
    if len(value) == 2 and all(isinstance(i, int) for i in value):
        return f'"{value[0]}-{value[1]}"'
    return "[" + ", ".join(_toml(str(item)) for item in value) + "]"


def _str(value: Value) -> str:
    assert isinstance(value, str), value
    return value


def _opt_str(value: Value) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Value) -> int:
    assert isinstance(value, int) and not isinstance(value, bool), value
    return value


def _float(value: Value) -> float:
    assert isinstance(value, int | float) and not isinstance(value, bool), value
    return float(value)


def _strs(value: Value) -> tuple[str, ...]:
    assert isinstance(value, tuple), value
    return tuple(str(item) for item in value)

