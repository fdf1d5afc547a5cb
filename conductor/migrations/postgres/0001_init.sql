-- Nodes, ports and conductors. JSON documents are stored as TEXT; timestamps as
-- RFC 3339 TEXT; booleans as BIGINT 0/1 so one query text serves SQLite and PostgreSQL.
CREATE TABLE nodes (
    id BIGSERIAL PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT UNIQUE,
    driver TEXT NOT NULL,
    driver_info TEXT NOT NULL,
    properties TEXT NOT NULL,
    instance_info TEXT NOT NULL,
    instance_uuid TEXT UNIQUE,
    extra TEXT NOT NULL,
    provision_state TEXT NOT NULL,
    target_provision_state TEXT,
    power_state TEXT,
    target_power_state TEXT,
    last_error TEXT,
    maintenance BIGINT NOT NULL DEFAULT 0,
    maintenance_reason TEXT,
    reservation TEXT,
    conductor TEXT,
    driver_internal_info TEXT NOT NULL,
    clean_step TEXT NOT NULL,
    deploy_step TEXT NOT NULL,
    resource_class TEXT,
    boot_interface TEXT NOT NULL,
    deploy_interface TEXT NOT NULL,
    power_interface TEXT NOT NULL,
    management_interface TEXT NOT NULL,
    inspect_interface TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT,
    provision_updated_at TEXT,
    inspection_started_at TEXT,
    inspection_finished_at TEXT,
    -- Agent bookkeeping, written by lookup/heartbeat only (never by a whole-node save).
    agent_token TEXT,
    agent_url TEXT,
    agent_verify_ca TEXT,
    agent_last_heartbeat TEXT
);
CREATE INDEX nodes_provision_state ON nodes (provision_state);
CREATE INDEX nodes_reservation ON nodes (reservation);

CREATE TABLE ports (
    id BIGSERIAL PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL UNIQUE,
    node_uuid TEXT NOT NULL REFERENCES nodes (uuid) ON DELETE CASCADE,
    pxe_enabled BIGINT NOT NULL DEFAULT 1,
    extra TEXT NOT NULL,
    local_link_connection TEXT NOT NULL,
    physical_network TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT
);
CREATE INDEX ports_node_uuid ON ports (node_uuid);

CREATE TABLE conductors (
    hostname TEXT PRIMARY KEY,
    drivers TEXT NOT NULL,
    alive BIGINT NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT
);

CREATE TABLE inventories (
    node_uuid TEXT PRIMARY KEY REFERENCES nodes (uuid) ON DELETE CASCADE,
    inventory TEXT NOT NULL,
    plugin_data TEXT NOT NULL,
    created_at TEXT NOT NULL
);
