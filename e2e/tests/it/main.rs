//! The integration tests, in one binary: every file here is a module of it, so a change
//! links the whole stack once, not once per file. Each test still gets its own key and
//! queue prefix and its own database, so they run in parallel on the shared services.
//! The tests that need a process (or the local clusters) to themselves keep binaries of
//! their own beside this folder: the log scan (the process-wide log subscriber), the
//! metrics flow (the process-wide recorder), and the cluster and failover tests.

mod abuse;
mod admission;
mod arbitrary_input;
mod artifacts;
mod batch_processor;
mod batching;
mod budgets;
mod delivery;
mod events;
mod exactly_once;
mod guessing;
mod harness;
mod http_contract;
mod http_hardening;
mod human_check;
mod login_page_browser;
mod openapi_contract;
mod outages;
mod pool;
mod queues;
mod receipts;
mod secrets;
mod sms;
mod store;
mod templates;
mod tokens;
mod users;
