-- The revenue-split ledger of a settled portfolio dispatch (issue 14): a ledger entry
-- comes from a site event's settlement or from a dispatch's, never both.
ALTER TABLE ledger_entries ALTER COLUMN event_id DROP NOT NULL;
ALTER TABLE ledger_entries ADD COLUMN dispatch_id bigint;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_one_source
    CHECK ((event_id IS NULL) <> (dispatch_id IS NULL));
CREATE UNIQUE INDEX ledger_entries_dispatch_payee
    ON ledger_entries (portfolio_id, site_id, dispatch_id, party, payee)
    WHERE dispatch_id IS NOT NULL;
