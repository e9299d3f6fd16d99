-- Central store, version 2: frame sizes as received, per batch and per agent (traffic accounting).
ALTER TABLE batches ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
