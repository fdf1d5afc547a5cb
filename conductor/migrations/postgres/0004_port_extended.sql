-- Ironic port fields Ferrite stores and shows without a column of their own (name,
-- description, vendor, category, portgroup_uuid, is_smartnic,
-- available_for_dynamic_portgroup): one JSON document, see api::ports::EXTENDED.
ALTER TABLE ports ADD COLUMN extended TEXT NOT NULL DEFAULT '{}';
