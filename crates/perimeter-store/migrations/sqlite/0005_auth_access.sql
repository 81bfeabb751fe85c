-- Staff access, second part (issue 4): usernames unique across the installation, atomic
-- log-in throttling with one attempt at a time per account, care teams for minimum-necessary
-- access, practice-scoped emergency access with the privacy officer's review, and in-app
-- notifications. No PHI in clear anywhere.

-- Usernames are unique across the installation: the log-in form names no practice, and one
-- name must never reach two accounts. An account that shared its username with an older
-- account (of another practice) gets '-' and the first 8 characters of its id appended; the
-- administrator tells that user the new name.
UPDATE staff_user
   SET username = username || '-' || substr(id, 1, 8)
 WHERE EXISTS (
    SELECT 1 FROM staff_user AS older
     WHERE older.username = staff_user.username
       AND (older.created_at < staff_user.created_at
            OR (older.created_at = staff_user.created_at AND older.id < staff_user.id)));
CREATE UNIQUE INDEX staff_user_username_unique ON staff_user (username);

-- Throttling: account keys are the normalised username (known or not, so a lockout says
-- nothing about whether the account exists); an attempt holds a short lease; refused attempts
-- are counted and audited at most once per interval.
ALTER TABLE auth_throttle ADD COLUMN lease_until BIGINT;
ALTER TABLE auth_throttle ADD COLUMN refused BIGINT NOT NULL DEFAULT 0;
ALTER TABLE auth_throttle ADD COLUMN refused_audited_at BIGINT;
UPDATE auth_throttle
   SET subject = (SELECT username FROM staff_user WHERE staff_user.id = auth_throttle.subject)
 WHERE scope = 'account'
   AND EXISTS (SELECT 1 FROM staff_user WHERE staff_user.id = auth_throttle.subject);
CREATE INDEX auth_throttle_last_failure ON auth_throttle (last_failure_at);

-- Care teams: the clinicians and nurses a patient is in the care of. Clinical message bodies
-- are shown only to them (or through an emergency-access grant).
CREATE TABLE care_team (
    patient_id  TEXT    NOT NULL REFERENCES patient(id),
    staff_id    TEXT    NOT NULL REFERENCES staff_user(id),
    practice_id TEXT    NOT NULL REFERENCES practice(id),
    assigned_by TEXT    REFERENCES staff_user(id),   -- NULL when Perimeter assigned
    assigned_at BIGINT  NOT NULL,
    PRIMARY KEY (patient_id, staff_id)
);
CREATE INDEX care_team_staff ON care_team (staff_id, patient_id);

-- Emergency access belongs to the patient's practice and is reviewed by its privacy officer.
ALTER TABLE break_glass_grant ADD COLUMN practice_id TEXT REFERENCES practice(id);
UPDATE break_glass_grant
   SET practice_id = (SELECT practice_id FROM patient WHERE patient.id = break_glass_grant.patient_id);
ALTER TABLE break_glass_grant ADD COLUMN reviewed_at BIGINT;
ALTER TABLE break_glass_grant ADD COLUMN reviewed_by TEXT REFERENCES staff_user(id);
ALTER TABLE break_glass_grant ADD COLUMN review_outcome TEXT;
CREATE INDEX break_glass_grant_review ON break_glass_grant (practice_id, reviewed_at, granted_at);

-- Notifications go to a role of a practice (in-app, polled by the console).
ALTER TABLE notification_outbox ADD COLUMN practice_id TEXT REFERENCES practice(id);
ALTER TABLE notification_outbox ADD COLUMN recipient_role TEXT;
ALTER TABLE notification_outbox ADD COLUMN delivered_to TEXT REFERENCES staff_user(id);
UPDATE notification_outbox
   SET recipient_role = 'privacy_officer',
       practice_id = (SELECT g.practice_id FROM break_glass_grant AS g
                       WHERE g.id = json_extract(notification_outbox.payload, '$.grant'))
 WHERE kind = 'break_glass';
CREATE INDEX notification_outbox_recipient
    ON notification_outbox (practice_id, recipient_role, delivered_at, created_at);
