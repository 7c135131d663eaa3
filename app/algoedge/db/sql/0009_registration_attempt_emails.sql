-- Register answers alike whether the e-mail is new or taken (docs/security.md): the owner of a
-- taken one is told by e-mail instead, at most once a day (key registration_attempt:<id>:<day>).
-- Old pods insert only 'welcome' and 'report', which stay allowed.
ALTER TABLE email_deliveries DROP CONSTRAINT email_deliveries_kind_check;
ALTER TABLE email_deliveries ADD CONSTRAINT email_deliveries_kind_check
    CHECK (kind IN ('welcome', 'report', 'registration_attempt'));
