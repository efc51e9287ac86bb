-- WASM agents: a version has no image until its module is uploaded; then it records
-- the per-version image's id and the module's sha256, and the fuel each run gets.
ALTER TABLE agent_versions ALTER COLUMN image_digest DROP NOT NULL;
ALTER TABLE agent_versions ADD COLUMN module_sha256 text;
ALTER TABLE agent_versions ADD COLUMN fuel bigint;
