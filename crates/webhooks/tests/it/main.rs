//! Integration tests of cds-events-webhooks: a real SQLite log, the real
//! service, loopback receivers.

mod crud;
mod delivery;
mod durability;
mod pace;
mod security;
mod support;
