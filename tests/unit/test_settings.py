from pathlib import Path

import pytest

from streams.settings import Settings


def test_env_names_and_secret_masking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERSTREAM_WATERMARK_KEYS", "k1:c2VjcmV0LXNlZWQ=")
    monkeypatch.setenv("INFERSTREAM_TOPIC_PARTITIONS", "6")
    settings = Settings()
    shown = settings.describe()
    assert shown["INFERSTREAM_WATERMARK_KEYS"] == "********"
    assert "c2VjcmV0" not in repr(shown)
    assert shown["INFERSTREAM_TOPIC_PARTITIONS"] == 6
    assert settings.watermark_keys is not None
    assert settings.watermark_keys.get_secret_value() == "k1:c2VjcmV0LXNlZWQ="


def test_embedded_services_unless_urls_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    local = Settings(kafka_port=1234, triton_grpc_port=5678, run_dir=Path("/tmp/x"))
    assert local.embedded_kafka and local.bootstrap_servers == "127.0.0.1:1234"
    assert local.embedded_triton and local.triton_endpoint == "127.0.0.1:5678"
    monkeypatch.setenv("INFERSTREAM_BROKER_URL", "kafka-a:9092,kafka-b:9092")
    monkeypatch.setenv("INFERSTREAM_TRITON_URL", "triton:8001")
    external = Settings()
    assert not external.embedded_kafka and external.bootstrap_servers == "kafka-a:9092,kafka-b:9092"
    assert not external.embedded_triton and external.triton_endpoint == "triton:8001"


def test_settings_are_frozen() -> None:
    with pytest.raises(ValueError):
        Settings().max_batch = 3  # type: ignore[misc]
