-- The AI vendor registry (issue 6): where the gateway may send a model call, under which terms.
-- No PHI here. The vendor's API key is sealed under its own data key (wrapped by the KEK), or
-- named by an environment variable read at call time; it is never stored in clear.

CREATE TABLE ai_vendor (
    id                  TEXT    PRIMARY KEY,
    name                TEXT    NOT NULL,
    base_url            TEXT    NOT NULL,
    data_class          TEXT    NOT NULL CHECK (data_class IN ('phi', 'deidentified', 'none')),
    inside_perimeter    BIGINT  NOT NULL DEFAULT 0,
    enabled             BIGINT  NOT NULL DEFAULT 1,
    baa_signed          TEXT,                       -- YYYY-MM-DD
    baa_expires         TEXT,                       -- YYYY-MM-DD, last day in force
    baa_document        TEXT,                       -- a reference to the signed document
    zero_retention      BIGINT  NOT NULL DEFAULT 0,
    no_training         BIGINT  NOT NULL DEFAULT 0,
    soc2_report_date    TEXT,
    soc2_expires        TEXT,
    sub_processors      TEXT    NOT NULL DEFAULT '[]',   -- JSON array of names
    api_key_env         TEXT,                       -- environment variable holding the key
    key_kek_version     BIGINT,
    key_dek_id          BLOB,
    key_wrapped_dek     BLOB,
    key_ct              BLOB,
    downgrade_recorded  TEXT,                       -- the BAA expiry whose downgrade was recorded
    revision            BIGINT  NOT NULL,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    CHECK (api_key_env IS NULL OR key_ct IS NULL)
);
CREATE UNIQUE INDEX ai_vendor_name_unique ON ai_vendor (name);

-- A model belongs to at most one vendor: a request's model names the vendor it goes to.
CREATE TABLE ai_vendor_model (
    model     TEXT  PRIMARY KEY,
    vendor_id TEXT  NOT NULL REFERENCES ai_vendor(id) ON DELETE CASCADE,
    position  BIGINT NOT NULL
);
CREATE INDEX ai_vendor_model_vendor ON ai_vendor_model (vendor_id, position);
