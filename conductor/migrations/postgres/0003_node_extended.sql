-- Ironic node fields Ferrite stores and shows without a column of their own (owner,
-- lessee, description, retired, protected, traits, network_data, the interfaces it
-- only names…): one JSON document, see model::EXTENDED_FIELDS.
ALTER TABLE nodes ADD COLUMN extended TEXT NOT NULL DEFAULT '{}';
