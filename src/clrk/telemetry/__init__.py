"""The telemetry store: invocations, agent logs and spans in ClickHouse tables (chDB
embedded, or a ClickHouse server), in the OpenTelemetry collector exporter's layout."""
