"""Table definitions. ``otel_logs`` and ``otel_traces`` follow the OpenTelemetry
collector's ClickHouse exporter so Grafana's ClickHouse plugin reads them unchanged;
``clrk_invocations`` keeps each Invocation's latest state (ReplacingMergeTree on the
resourceVersion); ``clrk_calls`` is every span the console aggregates, reduced to typed
columns by a materialized view as spans are inserted (a Map column read for each of a
million spans is what would make the console slow)."""

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

# One row per recorded span: the execution (kind "invocation", its phase in Status), each
# egress call the gateway saw ("llm", "mcp", "http", "tcp", "udp", "dns") and the agent's
# own spans ("agent"); tokens and cost as numbers, the cost exact (Decimal). ``Recorded``
# is when the row was written, which is what the console's live view follows (an egress
# span arrives after its call ended, with an older start).
CLRK_CALLS = f"""
CREATE TABLE IF NOT EXISTS clrk_calls (
    Recorded DateTime64(6),
    Timestamp DateTime64(9),
    Namespace LowCardinality(String),
    AgentKind LowCardinality(String),
    AgentName LowCardinality(String),
    Invocation String,
    TraceId String,
    SpanId String,
    ParentSpanId String,
    Kind LowCardinality(String),
    Name String,
    Provider LowCardinality(String),
    Model LowCardinality(String),
    Tool String,
    Gateway LowCardinality(String),
    Route LowCardinality(String),
    Host String,
    Decision LowCardinality(String),
    Reason String,
    Status LowCardinality(String),
    Streamed UInt8,
    InputTokens UInt64,
    OutputTokens UInt64,
    CacheReadTokens UInt64,
    CacheWriteTokens UInt64,
    ReasoningTokens UInt64,
    CostUSD Decimal(38, 9),
    Unpriced UInt8,
    Duration UInt64,
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_invocation Invocation TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(Timestamp)
ORDER BY (Kind, Timestamp)
TTL toDateTime(Timestamp) + toIntervalDay({RETENTION_DAYS})
SETTINGS ttl_only_drop_parts = 1
"""

_A = "SpanAttributes"
CALLS_SELECT = f"""
SELECT now64(6) AS Recorded, Timestamp,
    if({_A}['clrk.agent.namespace'] != '', {_A}['clrk.agent.namespace'],
       ResourceAttributes['service.namespace']) AS Namespace,
    {_A}['clrk.agent.kind'] AS AgentKind, {_A}['clrk.agent.name'] AS AgentName,
    {_A}['clrk.invocation'] AS Invocation, TraceId, SpanId, ParentSpanId,
    multiIf(ScopeName = 'clrk' AND startsWith(SpanName, 'invoke '), 'invocation',
            ScopeName != 'clrk.egress', 'agent',
            {_A}['mcp.method.name'] != '', 'mcp',
            {_A}['gen_ai.provider.name'] != '', 'llm',
            {_A}['dns.question.name'] != '', 'dns',
            {_A}['network.transport'] IN ('tcp', 'udp'), {_A}['network.transport'],
            'http') AS Kind,
    SpanName AS Name, {_A}['gen_ai.provider.name'] AS Provider,
    if({_A}['gen_ai.response.model'] != '', {_A}['gen_ai.response.model'],
       {_A}['gen_ai.request.model']) AS Model,
    {_A}['gen_ai.tool.name'] AS Tool, {_A}['clrk.gateway'] AS Gateway,
    {_A}['clrk.route'] AS Route,
    if({_A}['server.address'] != '', {_A}['server.address'],
       {_A}['dns.question.name']) AS Host,
    {_A}['clrk.decision'] AS Decision,
    if({_A}['clrk.deny_reason'] != '', {_A}['clrk.deny_reason'], StatusMessage) AS Reason,
    if({_A}['clrk.invocation.phase'] != '', {_A}['clrk.invocation.phase'],
       StatusCode) AS Status,
    {_A}['gen_ai.request.stream'] = 'true' AS Streamed,
    toUInt64OrZero({_A}['gen_ai.usage.input_tokens']) AS InputTokens,
    toUInt64OrZero({_A}['gen_ai.usage.output_tokens']) AS OutputTokens,
    toUInt64OrZero({_A}['gen_ai.usage.cache_read.input_tokens']) AS CacheReadTokens,
    toUInt64OrZero({_A}['gen_ai.usage.cache_creation.input_tokens']) AS CacheWriteTokens,
    toUInt64OrZero({_A}['gen_ai.usage.reasoning.output_tokens']) AS ReasoningTokens,
    toDecimal128OrZero({_A}['clrk.cost.usd'], 9) AS CostUSD,
    {_A}['clrk.cost.priced'] = 'false' AS Unpriced, Duration
FROM otel_traces
"""

CLRK_CALLS_VIEW = f"CREATE MATERIALIZED VIEW IF NOT EXISTS clrk_calls_mv TO clrk_calls AS " \
    f"{CALLS_SELECT}"
# Written once, when clrk_calls is created on a store that already holds spans.
CALLS_BACKFILL = f"INSERT INTO clrk_calls {CALLS_SELECT}"

TABLES = (OTEL_LOGS, OTEL_TRACES, CLRK_INVOCATIONS, CLRK_CALLS, CLRK_CALLS_VIEW)

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
