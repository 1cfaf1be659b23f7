"""The one place that reads the environment: every knob, its default, its doc and its env name.

Each field is read from ``INFERSTREAM_<FIELD_NAME>`` (upper case). ``inferstream config`` prints the
effective values with secrets masked.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Frozen, typed configuration of one inferstream process."""

    model_config = SettingsConfigDict(env_prefix="INFERSTREAM_", frozen=True, extra="ignore")

    # --- Kafka -------------------------------------------------------------------------------
    broker_url: str | None = Field(
        None,
        description="Kafka bootstrap servers ('host:port[,host:port]'); unset = the local broker "
        "that `inferstream up` starts on 127.0.0.1:kafka_port.",
    )
    kafka_port: int = Field(19092, description="Port of the local (embedded) Kafka broker.")
    app_id: str = Field("inferstream", description="Faust app id = Kafka consumer group id.")
    topic_partitions: int = Field(
        4, ge=1, description="Partitions of every topic inferstream creates."
    )
    replication_factor: int = Field(1, ge=1, description="Replication factor of created topics.")
    topic_in: str = Field("conversations.in", description="Input topic of conversation turns.")
    topic_out: str = Field("conversations.out", description="Output topic of results.")
    topic_deadletter: str = Field("deadletter", description="Topic of rejected events.")
    topic_policies: str = Field("policies", description="Compacted topic of tenant policies.")
    topic_analytics: str = Field(
        "analytics.events", description="One compact record per processed event, with its cost."
    )
    topic_moderation: str = Field(
        "moderation.events", description="Audit topic: blocked/masked outputs and denials."
    )
    rebalance_timeout_s: float = Field(10.0, description="Faust broker_rebalance_timeout.")
    session_timeout_s: float = Field(10.0, description="Kafka consumer session timeout.")
    heartbeat_interval_s: float = Field(3.0, description="Kafka consumer heartbeat interval.")

    # --- Triton ------------------------------------------------------------------------------
    triton_url: str | None = Field(
        None,
        description="Triton gRPC endpoint 'host:port'; unset = the local Triton that `inferstream "
        "up` starts on 127.0.0.1:triton_grpc_port.",
    )
    triton_http_port: int = Field(18000, description="HTTP port of the local Triton.")
    triton_grpc_port: int = Field(18001, description="gRPC port of the local Triton.")
    triton_metrics_port: int = Field(18002, description="Metrics port of the local Triton.")
    model_name: str = Field(
        "inferstream_cpu",
        description="Triton model for turns: inferstream_cpu (trained heads, INT8) or minilm_cpu "
        "(zero-shot support intents, FP32).",
    )
    model_repo: Path = Field(REPO_ROOT / "model_repo", description="Triton model repository.")
    inference_timeout_s: float = Field(10.0, gt=0, description="Deadline of one Triton call.")
    retry_initial_s: float = Field(0.2, gt=0, description="First back-off of a retriable error.")
    retry_max_s: float = Field(5.0, gt=0, description="Longest back-off between retries.")

    # --- processing --------------------------------------------------------------------------
    max_text_bytes: int = Field(
        16384, ge=1, description="Longest accepted turn text (UTF-8 bytes)."
    )
    max_event_bytes: int = Field(
        1_048_576, ge=1, description="Largest accepted raw event (bytes) before parsing."
    )
    max_seq_len: int = Field(256, ge=8, description="Token cap per turn sent to the model.")
    max_batch: int = Field(32, ge=1, description="Most events handed to one model call.")
    max_wait_ms: float = Field(5.0, ge=0, description="Longest wait to fill a batch (ms).")

    # --- governance --------------------------------------------------------------------------
    watermark_key_dir: Path | None = Field(
        None,
        description="Folder of Ed25519 keys (<kid>.pem); unset and no watermark_keys: "
        "`inferstream up` makes a dev key in run_dir/keys.",
    )
    watermark_keys: SecretStr | None = Field(
        None, description="Signing keys as 'kid:base64(seed)[,kid:...]' (secret; masked)."
    )
    watermark_active_kid: str | None = Field(None, description="Key id that signs new outputs.")
    filter_terms_path: Path | None = Field(
        None, description="JSON file of blocked terms per tenant ('*' = all); hot-reloaded."
    )
    policy_wait_s: float = Field(
        60.0, gt=0, description="Longest wait at start for the policy table to catch up."
    )

    # --- telemetry ---------------------------------------------------------------------------
    gpu_usd_per_hour: float = Field(
        3.50, ge=0, description="Price of one GPU Triton replica-hour (cost per event)."
    )
    cpu_usd_per_hour: float = Field(
        0.09, ge=0, description="Price of one CPU Triton replica-hour (cost per event)."
    )

    # --- process -----------------------------------------------------------------------------
    web_port: int = Field(6066, description="Faust web port of the worker (health, metrics).")
    web_enabled: bool = Field(True, description="Run the worker's web server.")
    run_dir: Path = Field(REPO_ROOT / ".run", description="Logs, pid files and local data.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "inferstream",
        description="Jars and model artifacts cached across checkouts.",
    )
    log_level: str = Field("info", description="Log level of the worker.")

    @property
    def bootstrap_servers(self) -> str:
        return self.broker_url or f"127.0.0.1:{self.kafka_port}"

    @property
    def triton_endpoint(self) -> str:
        return self.triton_url or f"127.0.0.1:{self.triton_grpc_port}"

    @property
    def embedded_kafka(self) -> bool:
        return self.broker_url is None

    @property
    def embedded_triton(self) -> bool:
        return self.triton_url is None

    def describe(self) -> dict[str, object]:
        """Effective settings with their env names; secrets masked."""
        out: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********"
            elif isinstance(value, Path):
                value = str(value)
            out[f"INFERSTREAM_{name.upper()}"] = value
        return out
