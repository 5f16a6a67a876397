"""The catalog room, at the bottom of curation: settings, the workspace folder, the catalog database (ORM and
Alembic migrations), atomic file writes, safe image decoding, status counts, the training-run ledger and the
one user-facing error type. Every other room builds on it; it imports none of them."""
