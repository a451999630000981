"""Table definitions. ``otel_logs`` and ``otel_traces`` follow the OpenTelemetry
collector's ClickHouse exporter so Grafana's ClickHouse plugin reads them unchanged;
``clrk_invocations`` keeps each Invocation's latest state (ReplacingMergeTree on the
resourceVersion)."""

from __future__ import annotations

RETENTION_DAYS = 30

OTEL_LOGS = f"""
CREATE TABLE IF NOT EXISTS otel_logs (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    EventName String CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(TimestampTime)
PRIMARY KEY (ServiceName, TimestampTime)
ORDER BY (ServiceName, TimestampTime, Timestamp)
TTL TimestampTime + toIntervalDay({RETENTION_DAYS})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""

OTEL_TRACES = f"""
CREATE TABLE IF NOT EXISTS otel_traces (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
TTL toDateTime(Timestamp) + toIntervalDay({RETENTION_DAYS})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""

CLRK_INVOCATIONS = f"""
CREATE TABLE IF NOT EXISTS clrk_invocations (
    Namespace LowCardinality(String),
    Name String,
    ResourceVersion UInt64,
    Created DateTime64(6),
    AgentKind LowCardinality(String),
    AgentName String,
    Phase LowCardinality(String),
    Object String CODEC(ZSTD(1))
) ENGINE = ReplacingMergeTree(ResourceVersion)
ORDER BY (Namespace, Name)
TTL toDateTime(Created) + toIntervalDay({RETENTION_DAYS})
"""

TABLES = (OTEL_LOGS, OTEL_TRACES, CLRK_INVOCATIONS)

LOG_COLUMNS = ("Timestamp", "TraceId", "SpanId", "TraceFlags", "SeverityText",
               "SeverityNumber", "ServiceName", "Body", "ResourceSchemaUrl",
               "ResourceAttributes", "ScopeSchemaUrl", "ScopeName", "ScopeVersion",
               "ScopeAttributes", "LogAttributes", "EventName")
TRACE_COLUMNS = ("Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName",
                 "SpanKind", "ServiceName", "ResourceAttributes", "ScopeName", "ScopeVersion",
                 "SpanAttributes", "Duration", "StatusCode", "StatusMessage",
                 "Events.Timestamp", "Events.Name", "Events.Attributes", "Links.TraceId",
                 "Links.SpanId", "Links.TraceState", "Links.Attributes")
INVOCATION_COLUMNS = ("Namespace", "Name", "ResourceVersion", "Created", "AgentKind",
                      "AgentName", "Phase", "Object")
