//! The Redis layer, owned here and nowhere else: the connection, the key layout, the
//! record layouts, every Lua script of both processes and the typed calls that run
//! them. The api and the worker never build a key, spell a field or read a script's
//! reply themselves; they call the functions below, which take checked types (phones,
//! `Uuid`s) and answer enums. A reply a function does not know is an error, never a
//! default.

pub mod admission;
pub mod client_limit;
pub mod codes;
pub mod conn;
pub mod delivery;
pub mod fallback;
pub mod fallback_timers;
pub mod keys;
pub mod lease;
pub mod receipts;
pub mod records;
mod scripts;
pub mod send_budget;
pub mod sender_health;
pub mod sessions;
pub mod status;
pub mod wati_budget;
mod words;

pub use conn::{RedisConn, connect, is_outage};
pub use keys::Keys;
