-- Several conductors on one database (docs/architecture.md, "Several conductors"): each
-- row's updated_at is its heartbeat; conductor_group limits which nodes the hash ring
-- gives it; api_url is where the others forward requests for its nodes.
ALTER TABLE conductors ADD COLUMN conductor_group TEXT NOT NULL DEFAULT '';
ALTER TABLE conductors ADD COLUMN api_url TEXT;
