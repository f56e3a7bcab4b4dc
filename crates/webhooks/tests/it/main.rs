//! Integration tests of cds-events-webhooks: a real SQLite log, the real
//! service (its store SQLite, or PostgreSQL in `postgres`), loopback
//! receivers; in `cluster`, several instances on one PostgreSQL database.

mod cloudevents;
mod cluster;
mod crud;
mod delivery;
mod durability;
mod ordering;
mod pace;
mod postgres;
mod security;
mod support;
