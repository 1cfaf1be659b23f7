"""The one place that reads the environment: every knob, its default, its doc and its env name.

Each field is read from ``INFERSTREAM_<FIELD_NAME>`` (upper case). ``inferstream config`` prints the
effective values with secrets masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import unquote

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
    min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas of created topics (with acks=all); unset = the broker's.",
    )
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
    topic_experiments: str = Field(
        "experiments", description="Compacted topic of model experiments (key = tenant or '*')."
    )
    topic_experiment_events: str = Field(
        "experiments.events",
        description="Per-event outcomes under an experiment: served arm beside its shadows.",
    )
    topic_documents_in: str = Field("documents.in", description="Input topic of documents.")
    topic_documents_out: str = Field(
        "documents.out", description="Output topic of document entity results."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client of the worker connects."
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user of this worker.")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (secret; masked). Or kafka_sasl_password_file."
    )
    kafka_sasl_password_file: Path | None = Field(
        None, description="File holding the SASL password (e.g. a mounted Kubernetes Secret)."
    )
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle that signed the brokers.")
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS).")
    kafka_ssl_keyfile: Path | None = Field(None, description="Client private key (mutual TLS).")
    rebalance_timeout_s: float = Field(10.0, description="Faust broker_rebalance_timeout.")
    session_timeout_s: float = Field(10.0, description="Kafka consumer session timeout.")
    heartbeat_interval_s: float = Field(3.0, description="Kafka consumer heartbeat interval.")
    fetch_stall_s: float = Field(
        30.0,
        gt=0,
        description="An assigned input partition that does not start fetching for this long "
        "(its committed offset never arrives: librdkafka's fetch state stays out of 'active', "
        "seen in its statistics) while nothing is consumed resets the processing session, "
        "whose new consumer looks the group coordinator up anew. A pending transaction of a "
        "dead worker holds such a partition back legitimately, up to transaction_timeout_s.",
    )

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
        description="Triton model for turns: inferstream_cpu (trained heads, INT8 or FP32 as "
        "built) or minilm_cpu (zero-shot support intents, FP32).",
    )
    model_precision: Literal["auto", "int8", "fp32"] = Field(
        "auto",
        description="What build-models installs as inferstream_cpu: auto = NNCF INT8 where the "
        "CPU has VNNI or AMX and INT8 stays within the gate of FP32 on every held-out metric, "
        "else FP32; int8 = INT8, failing the build if the gate fails; fp32 = no quantization.",
    )
    model_repo: Path = Field(REPO_ROOT / "model_repo", description="Triton model repository.")
    gpu_model_name: str | None = Field(
        "inferstream_gpu",
        description="Triton model preferred while it is ready (TensorRT FP16); unset = CPU only.",
    )
    triton_gpu_url: str | None = Field(
        None, description="Triton gRPC endpoint of the GPU model; unset = the same as triton_url."
    )
    gpu_reprobe_s: float = Field(
        15.0, ge=0, description="Seconds before a GPU route that went down is probed again."
    )
    triton_ssl: bool = Field(False, description="Connect to Triton's gRPC endpoint over TLS.")
    triton_ssl_root_cert: Path | None = Field(None, description="CA of Triton's TLS certificate.")
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
    max_output_bytes: int = Field(
        1_000_000,
        ge=1024,
        description="Largest record the worker produces (the topics' max.message.bytes); a "
        "larger output dead-letters its event (output_too_large).",
    )
    max_seq_len: int = Field(256, ge=8, description="Token cap per turn sent to the model.")
    max_batch: int = Field(32, ge=1, description="Most events handed to one model call.")
    max_wait_ms: float = Field(5.0, ge=0, description="Longest wait to fill a batch (ms).")
    max_inflight: int = Field(2, ge=1, description="Model calls (batches) in flight at once.")
    max_pending: int = Field(
        256,
        ge=1,
        description="Events taken from Kafka and not yet finished; at this many the worker "
        "pauses fetching (backpressure).",
    )
    shadow_max_inflight: int = Field(
        1, ge=1, description="Batches of shadow copies in flight at once, per shadow version."
    )
    shadow_max_batch: int = Field(
        8, ge=1, description="Most shadow copies in one model call (short calls pace finely)."
    )
    shadow_max_duty: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Share of the time a shadow version's model calls may be in flight; "
        "bounds the CPU a shadow takes from the primary on a shared host.",
    )
    shadow_max_pending: int = Field(
        256,
        ge=1,
        description="Shadow copies waiting per shadow version; more are shed (counted).",
    )
    experiment_max_attempts: int = Field(
        2,
        ge=1,
        description="Tries of a candidate's or shadow's model call before it counts as failed "
        "(a candidate's turn is then answered by the primary).",
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        "exactly_once",
        description="exactly_once: outputs, table changes and input offsets commit in one Kafka "
        "transaction per worker and commit (KIP-447, fenced by the group's generation).",
    )
    instance_id: str | None = Field(
        None,
        description="This worker's stable name in its group: its Kafka transactional id is "
        "app_id-instance_id, so a restarted worker fences its previous run at once. Unique per "
        "running worker; unset = hostname-web_port.",
    )
    transaction_timeout_s: float = Field(
        60.0,
        ge=1,
        le=900,
        description="Kafka's transaction.timeout.ms: the broker aborts a transaction open this "
        "long. A worker killed with an open transaction, and not restarted under the same "
        "instance_id, holds back read_committed readers of the partitions it wrote until then; "
        "a shorter one aborts commits that wait out a broker failover.",
    )
    commit_interval_ms: float = Field(
        100.0, gt=0, description="How often finished work is committed while busy (ms)."
    )
    commit_idle_gap_ms: float = Field(
        40.0,
        ge=0,
        description="A worker that runs out of work commits at once, at most one such commit "
        "per gap on average (ms; see commit_idle_burst): at low rates each commit is one Kafka "
        "transaction (several broker writes), so this bounds the transactions to 1000/gap per "
        "second; 0 = commit on every idle moment.",
    )
    commit_idle_burst: int = Field(
        3,
        ge=1,
        description="How many idle commits may follow one another without the gap, when "
        "commits were rarer than one per commit_idle_gap_ms before (a token bucket that gains "
        "one per gap): a result finished just after another commit (an image turn's, a second "
        "conversation's) is seen at once, and the long-run bound stays 1000/gap per second; "
        "1 = always the gap after the previous commit.",
    )
    commit_timeout_s: float = Field(
        30.0,
        gt=0,
        le=50,
        description="A commit (its records acknowledged, the input offset sent, the transaction "
        "committed) not done in this many seconds resets the processing session: the "
        "transaction aborts and its records are processed again from the last commit.",
    )
    dedupe_window_s: float = Field(
        7 * 86400.0, gt=0, description="How long an event id is remembered for de-duplication."
    )
    state_dir: Path | None = Field(
        None, description="Local RocksDB tables (a cache of the changelogs); unset = run_dir/state."
    )
    context_budget_tokens: int = Field(
        256, ge=0, description="Token budget of a turn plus its selected context."
    )
    context_gate: float = Field(
        0.7, ge=0, le=1, description="Weight of relevance against recency in context selection."
    )
    context_half_life_turns: float = Field(
        4.0, gt=0, description="Recency half-life of context selection (turns)."
    )
    context_turn_cap: int = Field(64, ge=1, description="Turns kept per conversation.")
    context_token_cap: int = Field(4096, ge=1, description="Tokens kept per conversation.")
    context_idle_s: float = Field(
        86400.0, gt=0, description="A conversation idle this long is dropped from the table."
    )
    doc_overlap_tokens: int = Field(
        32, ge=0, description="Tokens shared by consecutive chunks of a long document."
    )
    max_document_bytes: int = Field(
        2_000_000, ge=1, description="Largest accepted document event (bytes)."
    )

    # --- image attachments and OCR (docs/events.md, docs/ocr.md) -------------------------------
    attachment_store: Path | None = Field(
        None,
        description="Folder an attachment's 'ref' names a file in (the local object store); "
        "unset = run_dir/attachments.",
    )
    attachment_max_inline_bytes: int = Field(
        786_432,
        ge=1,
        description="Largest inline (base64) attachment, decoded bytes; an event must also fit "
        "max_event_bytes.",
    )
    attachment_max_bytes: int = Field(
        10_485_760, ge=1, description="Largest attachment read from the store (bytes)."
    )
    attachment_max_pixels: int = Field(
        40_000_000,
        ge=1,
        description="Most pixels in one image, checked from its header before it is decoded.",
    )
    attachment_max_count: int = Field(4, ge=1, description="Most attachments on one event.")
    ocr_enabled: bool = Field(
        True,
        description="Read image attachments (OCR models on Triton); off = an event with "
        "attachments is a dead letter (attachment_unsupported).",
    )
    ocr_det_model: str = Field("ocr_det", description="Triton model that finds text lines.")
    ocr_rec_model: str = Field("ocr_rec", description="Triton model that reads text lines.")
    ocr_max_inflight: int = Field(
        2,
        ge=1,
        description="Images a worker has in OCR at once; more wait (text turns never do).",
    )
    ocr_max_side: int = Field(
        1600,
        ge=64,
        description="Longer side of the image the line detector sees (a larger photo is "
        "scaled down for detection; lines are read from the full image).",
    )
    ocr_min_confidence: float = Field(
        0.5, ge=0, le=1, description="Recognised lines below this confidence are dropped."
    )
    ocr_int8: bool | None = Field(
        None,
        description="build-models installs the OCR models as NNCF INT8 where their CER stays "
        "within 1 point of FP32 (the build's gate); off = FP32 (the ONNX files as shipped); "
        "unset = tried only where the CPU has VNNI or AMX (as model_precision=auto).",
    )

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
    tracing_exporter: Literal["none", "console", "otlp-grpc", "otlp-http"] = Field(
        "none", description="Where spans go; none = tracing off (no spans are made)."
    )
    tracing_endpoint: str | None = Field(
        None, description="OTLP endpoint (default: the exporter's own, e.g. localhost:4317)."
    )
    tracing_headers: SecretStr | None = Field(
        None,
        description="Headers sent with every OTLP export, 'name=value,name2=value2' (an API key).",
    )
    tracing_sample_ratio: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Share of new traces sampled; a producer's sampled traceparent is honoured.",
    )
    gpu_usd_per_hour: float = Field(
        3.50, ge=0, description="Price of one GPU Triton replica-hour (cost per event)."
    )
    cpu_usd_per_hour: float = Field(
        0.09, ge=0, description="Price of one CPU Triton replica-hour (cost per event)."
    )

    # --- process -----------------------------------------------------------------------------
    web_port: int = Field(6066, description="Faust web port of the worker (health, metrics).")
    web_host: str = Field(
        "127.0.0.1", description="Bind address of the worker's web server (0.0.0.0 in a pod)."
    )
    web_enabled: bool = Field(True, description="Run the worker's web server.")
    run_dir: Path = Field(REPO_ROOT / ".run", description="Logs, pid files and local data.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "inferstream",
        description="Jars and model artifacts cached across checkouts.",
    )
    log_level: str = Field("info", description="Log level of the worker.")
    log_json: bool = Field(
        False, description="Log JSON lines (with trace_id and span_id) instead of text lines."
    )

    @property
    def bootstrap_servers(self) -> str:
        return self.broker_url or f"127.0.0.1:{self.kafka_port}"

    @property
    def triton_endpoint(self) -> str:
        return self.triton_url or f"127.0.0.1:{self.triton_grpc_port}"

    @property
    def state_path(self) -> Path:
        return self.state_dir or self.run_dir / "state"

    @property
    def attachment_path(self) -> Path:
        return self.attachment_store or self.run_dir / "attachments"

    @property
    def embedded_kafka(self) -> bool:
        return self.broker_url is None

    @property
    def embedded_triton(self) -> bool:
        return self.triton_url is None

    def tracing_header_map(self) -> dict[str, str]:
        """``tracing_headers`` as a mapping (OTLP exporter header syntax, values URL-decoded)."""
        if self.tracing_headers is None:
            return {}
        out: dict[str, str] = {}
        for item in self.tracing_headers.get_secret_value().split(","):
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise ValueError("INFERSTREAM_TRACING_HEADERS: expected 'name=value,...'")
            out[name.strip().lower()] = unquote(value.strip())
        return out

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
