"""Settings: one precedence rule (flag > env > file > default), clear one-line errors,
and ``webrtc-stt config`` printing the effective configuration with secrets masked."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from signaling import settings
from tests.test_cli import clean_env


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return parser.parse_args(argv)


def resolve(argv: list[str], env: dict[str, str]) -> settings.Settings:
    return settings.resolve(parse(argv), env)


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    file = tmp_path / "server.toml"
    file.write_text('port = 7000\nmax_sessions = 5\ncapacity_rtf = 0.5\nmodel = "base"\n'
                    'ice_host = ["10.0.0.5"]\nallow_download = true\n')
    env = {"WEBRTC_STT_PORT": "8000", "WEBRTC_STT_MAX_SESSIONS": "6",
           "WEBRTC_STT_ICE_HOST": "127.0.0.1,::1"}
    resolved = resolve(["--config", str(file), "--port", "9000", "--no-allow-download"], env)
    config = settings.server_config(resolved)
    assert config.port == 9000  # flag beats env and file
    assert config.hub.max_sessions == 6  # env beats file
    assert config.ice.host_addresses == ("127.0.0.1", "::1")  # env list, comma-separated
    assert config.hub.capacity_rtf == 0.5 and config.engine.model == "base"  # file
    assert config.allow_download is False  # --no-flag beats the file's true
    assert config.drain_timeout_s == 30.0 and config.log_format == "text"  # defaults
    assert resolved.sources["port"] == "flag" and resolved.sources["max_sessions"] == "env"
    assert resolved.sources["model"] == "file" and resolved.sources["host"] == "default"


def test_config_file_from_env(tmp_path: Path) -> None:
    file = tmp_path / "server.toml"
    file.write_text('udp_ports = "40000-40100"\ndrain_timeout = 5\nlog_format = "json"\n')
    config = settings.server_config(resolve([], {"WEBRTC_STT_CONFIG": str(file)}))
    assert (config.ice.port_min, config.ice.port_max) == (40000, 40100)
    assert config.drain_timeout_s == 5.0 and config.log_format == "json"


@pytest.mark.parametrize(
    ("toml", "env", "argv", "message"),
    [
        ("prot = 1\n", {}, [], "unknown key 'prot'"),
        ('port = "80"\n', {}, [], "port must be an integer, not '80'"),
        ("health_details = 1\n", {}, [], "health_details must be true or false"),
        ('log_format = "xml"\n', {}, [], "log_format must be one of text, json"),
        ("port = [\n", {}, [], "not valid TOML"),
        ("", {"WEBRTC_STT_CAPACITY_RTF": "lots"}, [], "WEBRTC_STT_CAPACITY_RTF must be a number"),
        ("", {}, ["--udp-ports", "9-1"], "--udp-ports: bad port range '9-1'"),
        ("", {}, ["--drain-timeout", "-1"], "drain_timeout must not be negative"),
    ],
)
def test_bad_values(tmp_path: Path, toml: str, env: dict[str, str], argv: list[str],
                    message: str) -> None:
    file = tmp_path / "server.toml"
    file.write_text(toml)
    with pytest.raises(settings.SettingsError, match="^.*$") as error:
        settings.server_config(resolve(["--config", str(file), *argv], env))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_config_command_prints_masked_effective_config(tmp_path: Path) -> None:
    file = tmp_path / "server.toml"
    file.write_text('whip_token = "hunter2"\nmax_sessions = 4\n')
    env = {**clean_env(), "WEBRTC_STT_PORT": "9100"}
    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "config", "--config", str(file), "--host", "::"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "hunter2" not in out and 'whip_token = "***"  # file' in out
    assert 'host = "::"  # flag' in out and "port = 9100  # env" in out
    assert "max_sessions = 4  # file" in out
    # The output is itself a valid config file (comments aside) with the same values.
    parsed = tomllib.loads(out)
    assert parsed["port"] == 9100 and parsed["host"] == "::"


def test_bad_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    file = tmp_path / "server.toml"
    file.write_text("nonsense = true\n")
    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "serve", "--config", str(file)],
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"webrtc-stt: {file}: unknown key 'nonsense' (see `webrtc-stt config`)"
    ]
