-- The Ironic collections Ferrite stores as documents (chassis, portgroups, volume
-- connectors and targets, deploy templates, runbooks): one table, one row per object,
-- its API fields as a JSON document. `node_uuid` ties an object to its node (deleted
-- with it); `key1`/`key2` hold each kind's uniqueness keys (e.g. a portgroup's MAC,
-- a volume target's node + boot index) so the database enforces them.
CREATE TABLE resources (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT,
    node_uuid TEXT REFERENCES nodes (uuid) ON DELETE CASCADE,
    key1 TEXT,
    key2 TEXT,
    doc TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT,
    UNIQUE (kind, name),
    UNIQUE (kind, key1),
    UNIQUE (kind, key2)
);
CREATE INDEX resources_kind ON resources (kind, id);
CREATE INDEX resources_node ON resources (node_uuid);
