//! End-to-end tests: a real certseal server on 127.0.0.1 with a temporary data folder, and a
//! real gRPC client (or the `certseal` binary itself).

// Shared helpers: starting servers, identities, valid identifiers.
mod util;

// Setup: scripts/ensure-deps on a simulated machine (fake dpkg, apt-get and virtualenv).
mod setup;

// Departments: register, read, list, rename, deactivate, and every bad input.
mod departments;
// Templates: draft, publish, versions, deprecate, list filters, and every bad input.
mod templates;
// Caller identity: development metadata, roles, and a server without authentication.
mod identity;
// Health and reflection services, as grpcurl and load balancers use them.
mod service_meta;
// Durability: data read back after a graceful restart and after kill -9.
mod restart;
// The command-line client against a running server.
mod cli;
// The audit log: entries per change, proofs, export, offline verification, tampering, crashes.
mod audit;
// The seal CA: created at first start, served, a CA to openssl, stable across restarts.
mod seal_ca;
// Seals: registration, certificates (checked by openssl), external CAs, lifecycle, usability,
// the signed trust list, and key custody (no plaintext key on disk or in logs; re-wrap).
mod seals;
// Licences: issue, idempotency, reads and lists, every lifecycle path, bad input, an
// independent COSE check in Python, bulk import and a restart.
mod licences;
// Licences collected under existing IDs (credit-code and region-code issuers): verified by ID,
// document and offline; the refusals; one collecting authority per (type, region); CLI import.
mod collected;
// Request IDs (AIP-155) on amend, renew, status, seal and policy changes: a retry gets the
// first answer and changes nothing, also after a restart; a reused ID is refused.
mod request_ids;
// Verification: every sub-indication from a real case, receipts (signed, logged, listed,
// checked by Python), the offline verifier agreeing with the service, batches.
mod verification;
// Mutual TLS: departments identified by client certificates, roles from the certificate.
mod tls;
// Holders: use codes made by a holder agent, checks with them over mutual TLS, one use under
// 32 simultaneous checks, the holder's record of every check with proofs, no personal data in
// the log.
mod holders;
// Abuse and limits: floods of oversize and malformed requests while a good client works; the
// configurable input bounds.
mod flood;
// Durability: concurrent issuers, a bulk import and an export, each cut by kill -9 at a random
// moment; every acknowledged licence is there byte for byte with its entry, nothing is half there.
mod crash;
// Operations: the Prometheus endpoint after some traffic; `certseal status`; request IDs.
mod metrics;
// The public verification page, in headless Chromium.
mod public_page;
// examples/python against a real server.
mod python_example;
// Online backup and offline restore: a new origin, the replay of revocations, refusals.
mod backup;
// A cluster: three certseal nodes on MariaDB Galera, forwarding, a follower's freshness, and
// fail-over under load when the leader, a follower and the database's write node are killed.
mod cluster;
// A full disk: writes stop and say so (health, status, metrics, errors), and resume once
// space is freed, with nothing acknowledged lost and nothing issued twice.
mod disk_full;
// National formats: SM2 seals (chain checked by OpenSSL), GB/T 38540 seals, SM2 licence
// documents (COSE v=2) checked by the service and offline, an external SM2 CA.
mod national;
// Joining the sharing platforms: the change feed (killed and restarted, stalled, positions and
// origins) and changes decided upstream, applied once.
mod sync;
